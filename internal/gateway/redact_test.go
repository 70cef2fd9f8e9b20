package gateway

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

func TestRedaction(t *testing.T) {
	for _, tc := range []struct {
		name                  string
		paths                 []string
		input, result         string
		wantInput, wantResult string
	}{{
		name:       "echoed input value: as a field, inside a sentence, in an array",
		paths:      []string{"input.card_number"},
		input:      `{"card_number":"4111111111111111","amount":12}`,
		result:     `{"echo":{"card_number":"4111111111111111","amount":12},"note":"card 4111111111111111 charged","cards":["4111111111111111"]}`,
		wantInput:  `{"amount":12,"card_number":"[redacted]"}`,
		wantResult: `{"cards":["[redacted]"],"echo":{"amount":12,"card_number":"[redacted]"},"note":"card [redacted] charged"}`,
	}, {
		name:       "a number, echoed as a number",
		paths:      []string{"input.card_number"},
		input:      `{"card_number":4111111111111111}`,
		result:     `{"n":4111111111111111,"s":"4111111111111111"}`,
		wantInput:  `{"card_number":"[redacted]"}`,
		wantResult: `{"n":"[redacted]","s":"[redacted]"}`,
	}, {
		name:       "a short value: whole, or standing alone",
		paths:      []string{"input.cvv"},
		input:      `{"cvv":"123","order":"81234"}`,
		result:     `{"cvv":"123","msg":"cvv 123 ok","order":"81234","x":"a123"}`,
		wantInput:  `{"cvv":"[redacted]","order":"81234"}`,
		wantResult: `{"cvv":"[redacted]","msg":"cvv [redacted] ok","order":"81234","x":"a123"}`,
	}, {
		name:       "an object at the path: each of its values",
		paths:      []string{"input.card"},
		input:      `{"card":{"number":"4111111111111111","holder":"Ada Lovelace","ok":true}}`,
		result:     `{"who":"Ada Lovelace","last":"4111111111111111"}`,
		wantInput:  `{"card":"[redacted]"}`,
		wantResult: `{"last":"[redacted]","who":"[redacted]"}`,
	}, {
		name:       "arrays on the way",
		paths:      []string{"input.items.card"},
		input:      `{"items":[{"card":"4111111111111111"},{"card":"5500000000000004"}]}`,
		result:     `{"paid":["4111111111111111","5500000000000004"]}`,
		wantInput:  `{"items":[{"card":"[redacted]"},{"card":"[redacted]"}]}`,
		wantResult: `{"paid":["[redacted]","[redacted]"]}`,
	}, {
		name:       "a result path: hidden elsewhere in the result and in the input",
		paths:      []string{"result.ssn"},
		input:      `{"q":"ssn 123-45-6789"}`,
		result:     `{"ssn":"123-45-6789","summary":"found 123-45-6789"}`,
		wantInput:  `{"q":"ssn [redacted]"}`,
		wantResult: `{"ssn":"[redacted]","summary":"found [redacted]"}`,
	}, {
		name:       "unqualified: both",
		paths:      []string{"email"},
		input:      `{"email":"a@example.com"}`,
		result:     `{"email":"b@example.com","to":"a@example.com"}`,
		wantInput:  `{"email":"[redacted]"}`,
		wantResult: `{"email":"[redacted]","to":"[redacted]"}`,
	}, {
		name:       "escaped in the result",
		paths:      []string{"input.pw"},
		input:      `{"pw":"s3cr\"et"}`,
		result:     `{"pw":"s3cr\"et","u":"\u0073\u0033cr\"et!"}`,
		wantInput:  `{"pw":"[redacted]"}`,
		wantResult: `{"pw":"[redacted]","u":"[redacted]!"}`,
	}, {
		name:       "nothing to hide: the result as sent",
		paths:      []string{"input.card_number"},
		input:      `{"amount":12}`,
		result:     `{"z":1, "a":"card"}`,
		wantInput:  `{"amount":12}`,
		wantResult: `{"z":1, "a":"card"}`,
	}, {
		name:       "value not in the result: the result as sent",
		paths:      []string{"input.card_number"},
		input:      `{"card_number":"4111111111111111"}`,
		result:     `{"z":1, "a":"ok"}`,
		wantInput:  `{"card_number":"[redacted]"}`,
		wantResult: `{"z":1, "a":"ok"}`,
	}, {
		name:       "booleans and nulls are not searched for",
		paths:      []string{"input.flag", "input.none"},
		input:      `{"flag":true,"none":null}`,
		result:     `{"ok":true,"x":null}`,
		wantInput:  `{"flag":"[redacted]","none":"[redacted]"}`,
		wantResult: `{"ok":true,"x":null}`,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRedaction(tc.paths, json.RawMessage(tc.input))
			if got := string(r.result(json.RawMessage(tc.result))); got != tc.wantResult {
				t.Errorf("result:\n got %s\nwant %s", got, tc.wantResult)
			}
			if got := string(r.input(json.RawMessage(tc.input))); got != tc.wantInput {
				t.Errorf("input:\n got %s\nwant %s", got, tc.wantInput)
			}
		})
	}
}

func TestRedactionText(t *testing.T) {
	r := newRedaction([]string{"input.card_number", "input.pw"}, json.RawMessage(`{"card_number":"4111111111111111","pw":"a\"b<c"}`))
	msg := `backend answered 402: card 4111111111111111 declined; request was {"card_number":"4111111111111111","pw":"a\"b\u003cc"}`
	want := `backend answered 402: card [redacted] declined; request was {"card_number":"[redacted]","pw":"[redacted]"}`
	if got := r.text(msg); got != want {
		t.Errorf("text:\n got %s\nwant %s", got, want)
	}
	var none *redaction
	if got := none.text(msg); got != msg {
		t.Errorf("no redaction changed the message: %s", got)
	}
	if got := string(none.result(json.RawMessage(`{"a":1}`))); got != `{"a":1}` {
		t.Errorf("no redaction changed the result: %s", got)
	}
}

// An input with more values under a redacted path than a redaction
// searches for: whole documents and messages are hidden, rather than
// risk a leak or a slow search.
func TestRedactionTooManyValues(t *testing.T) {
	items := make([]string, maxSecrets+1)
	for i := range items {
		items[i] = fmt.Sprintf(`"v%04d"`, i)
	}
	r := newRedaction([]string{"input.list"}, json.RawMessage(`{"list":[`+strings.Join(items, ",")+`]}`))
	if got := string(r.result(json.RawMessage(`{"first":"v0000"}`))); got != `"[redacted]"` {
		t.Errorf("result: %s", got)
	}
	if got := r.text("v0001 failed"); got != "[redacted]" {
		t.Errorf("text: %s", got)
	}
}
