package refund

default allow := false

allow if {
	input.action.name == "payments.refund"
	input.subject.properties.tenant == input.resource.properties.tenant
	input.subject.properties.role in {"admin", "ops"}
	input.context.env == "prod"
	input.context.risk < 5
	input.context.amount < 500
}
