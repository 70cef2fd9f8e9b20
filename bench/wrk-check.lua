-- wrk script: POSTs one check of the generated 1,000-policy bench bundle
-- (publish it first with `aibos bench --setup`).
-- wrk -t1 -c2 -d10s --latency -s bench/wrk-check.lua http://127.0.0.1:8181/v1/check
wrk.method = "POST"
wrk.body = "{\"subject\": {\"type\": \"agent\", \"id\": \"agent-42\", \"properties\": {\"roles\": [\"reader\", \"role-3\", \"admin\"], \"tenant\": \"t1\", \"tier\": \"pro\"}}, \"action\": {\"name\": \"ns01.v001\"}, \"resource\": {\"type\": \"table\", \"id\": \"orders\", \"properties\": {\"region\": \"eu-west\", \"classification\": \"internal\", \"tenant\": \"t1\"}}, \"context\": {\"region\": \"eu-west\", \"amount\": 250.0}}"
wrk.headers["Content-Type"] = "application/json"
