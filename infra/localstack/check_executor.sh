#!/usr/bin/env bash
# Smoke test for the orderflow-local Lambda executor against a running LocalStack
# (start it with infra/localstack/start.sh). Uses a Python `bootstrap` that speaks the
# Lambda Runtime API, so no Rust build is needed. Creates and deletes its own
# resources (prefix ofcheck-). Exit 0 only if every check passed.
# tests/run.sh (`make test`) runs it after the deploy: tests/test_executor.py covers the
# executor's own logic without LocalStack; this covers its glue with LocalStack's Lambda service.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)
LOCAL_DIR=${ORDERFLOW_LOCAL_DIR:-$REPO_ROOT/.local}
PORT=${LOCALSTACK_PORT:-4566}
ENDPOINT=http://127.0.0.1:$PORT
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_DEFAULT_REGION=us-east-1 AWS_PAGER=""
AWS_BIN=${AWS_BIN:-$LOCAL_DIR/tools-venv/bin/aws}
[ -x "$AWS_BIN" ] || AWS_BIN=$(command -v aws) || { echo "no aws CLI: run setup.sh" >&2; exit 1; }
aws() { "$AWS_BIN" --endpoint-url "$ENDPOINT" "$@"; }
curl -sf -m 3 "$ENDPOINT/_localstack/health" >/dev/null || { echo "LocalStack is not answering on $ENDPOINT: run infra/localstack/start.sh" >&2; exit 1; }

ROLE=arn:aws:iam::000000000000:role/ofcheck-lambda
FN=ofcheck-fn FN_TO=ofcheck-timeout FN_NODE=ofcheck-node FN_SQS=ofcheck-sqs FN_DDB=ofcheck-ddb
Q=ofcheck-queue DLQ=ofcheck-dlq TABLE=ofcheck-table
WORK=$(mktemp -d)
FAILED=0
ok() { printf '  ok   %s\n' "$*"; }
bad() { printf '  FAIL %s\n' "$*"; FAILED=1; }
step() { printf '\n== %s\n' "$*"; }

cleanup() {
  for uuid in $(aws lambda list-event-source-mappings --query 'EventSourceMappings[?contains(FunctionArn, `ofcheck-`)].UUID' --output text 2>/dev/null); do
    aws lambda delete-event-source-mapping --uuid "$uuid" >/dev/null 2>&1 || true
  done
  for f in $FN $FN_TO $FN_NODE $FN_SQS $FN_DDB; do aws lambda delete-function --function-name "$f" >/dev/null 2>&1 || true; done
  for q in $Q $DLQ; do aws sqs delete-queue --queue-url "$ENDPOINT/000000000000/$q" >/dev/null 2>&1 || true; done
  aws dynamodb delete-table --table-name $TABLE >/dev/null 2>&1 || true
}
trap 'cleanup; rm -rf "$WORK"' EXIT
cleanup

# ---- the function: a Runtime API client in plain Python (stdlib only)
mkdir -p "$WORK/code"
cat >"$WORK/code/bootstrap" <<'EOF'
#!/usr/bin/env python3
import json, os, sys, time, urllib.request
API = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime"
def post(path, doc):
    urllib.request.urlopen(urllib.request.Request(API + path, json.dumps(doc).encode(), method="POST")).read()
print("init:", os.environ["AWS_LAMBDA_FUNCTION_NAME"], "mem", os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"], flush=True)
while True:
    with urllib.request.urlopen(API + "/invocation/next") as r:
        rid = r.headers["Lambda-Runtime-Aws-Request-Id"]
        hdrs = {k: r.headers[k] for k in ("Lambda-Runtime-Deadline-Ms", "Lambda-Runtime-Invoked-Function-Arn", "Lambda-Runtime-Trace-Id")}
        event = json.loads(r.read() or b"{}")
    print("handling", rid, flush=True)
    records = event.get("Records", []) if isinstance(event, dict) else []
    mode = event.get("mode") if isinstance(event, dict) else None
    if mode == "fail":
        print("about to fail", file=sys.stderr, flush=True)
        post(f"/invocation/{rid}/error", {"errorType": "CheckError", "errorMessage": "asked to fail"})
        continue
    if mode == "sleep":
        time.sleep(event["seconds"])
    if mode == "crash":
        print("crashing", flush=True)
        os._exit(3)
    result = {"ok": True, "headers": hdrs, "cwd_has_bootstrap": os.path.exists("bootstrap"),
              "endpoint": os.environ.get("AWS_ENDPOINT_URL")}
    if records and records[0].get("eventSource") == "aws:sqs":
        print(f"SQS-BATCH size={len(records)}", flush=True)
        failures = []
        for rec in records:
            print(f"SQS-RECORD body={rec['body']}", flush=True)
            if "bad" in rec["body"]:
                failures.append({"itemIdentifier": rec["messageId"]})
        result = {"batchItemFailures": failures}
    elif records and records[0].get("eventSource") == "aws:dynamodb":
        for rec in records:
            print(f"DDB-RECORD {rec['eventName']} new={json.dumps(rec['dynamodb'].get('NewImage'))}", flush=True)
    post(f"/invocation/{rid}/response", result)
EOF
chmod +x "$WORK/code/bootstrap"
(cd "$WORK/code" && python3 -m zipfile -c ../fn.zip bootstrap)
echo 'exports.handler = async () => "hi";' >"$WORK/index.js"
(cd "$WORK" && python3 -m zipfile -c node.zip index.js)

create() { # name runtime timeout zip [handler]
  aws lambda create-function --function-name "$1" --runtime "$2" --timeout "$3" --role $ROLE \
    --handler "${5:-bootstrap}" --zip-file "fileb://$4" --memory-size 128 >/dev/null
}
invoke() { # name payload -> prints the CLI JSON, body in $WORK/out.json (CLI v1: payload is raw JSON)
  aws lambda invoke --function-name "$1" --payload "$2" \
    --log-type Tail "$WORK/out.json"
}
field() { python3 -c "import json,sys; d=json.load(sys.stdin); print(d.get('$1',''))"; }
logs_of() { # function-name pattern seconds: wait until CloudWatch Logs has a line matching pattern
  local deadline=$(( $(date +%s) + $3 ))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    aws logs filter-log-events --log-group-name "/aws/lambda/$1" --query 'events[].message' --output text 2>/dev/null \
      | tr '\t' '\n' | grep -E "$2" && return 0
    sleep 1
  done
  return 1
}

step "create provided.al2023 functions"
t0=$(date +%s.%N)
create $FN provided.al2023 10 "$WORK/fn.zip"
create $FN_TO provided.al2023 2 "$WORK/fn.zip"
aws lambda wait function-active-v2 --function-name $FN
aws lambda wait function-active-v2 --function-name $FN_TO
ok "both Active in $(awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $t0}") s"

step "direct invoke"
t0=$(date +%s.%N)
resp=$(invoke $FN '{"hello":"world"}')
cold=$(awk "BEGIN{printf \"%.2f\", $(date +%s.%N) - $t0}")
if [ -z "$(echo "$resp" | field FunctionError)" ] && grep -q '"ok": true' "$WORK/out.json"; then ok "cold invoke ${cold}s -> $(cat "$WORK/out.json")"; else bad "direct invoke: $resp $(cat "$WORK/out.json")"; fi
t0=$(date +%s.%N); invoke $FN '{}' >/dev/null
ok "warm invoke $(awk "BEGIN{printf \"%.2f\", $(date +%s.%N) - $t0}")s (includes aws CLI start-up)"

step "--log-type Tail shows START/END/REPORT and the process output"
tail_log=$(echo "$resp" | field LogResult | base64 -d)
echo "$tail_log" | sed 's/^/    | /'
if echo "$tail_log" | grep -q '^START RequestId' && echo "$tail_log" | grep -q '^END RequestId' \
   && echo "$tail_log" | grep -q '^REPORT RequestId' && echo "$tail_log" | grep -q '^handling'; then ok "tail log complete"; else bad "tail log incomplete"; fi

step "unhandled error -> FunctionError"
resp=$(invoke $FN '{"mode":"fail"}')
if [ "$(echo "$resp" | field FunctionError)" = Unhandled ] && grep -q CheckError "$WORK/out.json"; then ok "FunctionError=Unhandled body=$(cat "$WORK/out.json")"; else bad "error invoke: $resp $(cat "$WORK/out.json")"; fi
echo "$resp" | field LogResult | base64 -d | grep -q 'about to fail' && ok "stderr captured in the log" || bad "stderr missing from the log"

step "timeout (Timeout=2, sleeps 5) -> Sandbox.Timedout, then the next invoke works"
t0=$(date +%s.%N)
resp=$(invoke $FN_TO '{"mode":"sleep","seconds":5}')
took=$(awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $t0}")
if [ "$(echo "$resp" | field FunctionError)" = Unhandled ] && grep -q Sandbox.Timedout "$WORK/out.json"; then ok "after ${took}s: $(cat "$WORK/out.json")"; else bad "timeout: $resp $(cat "$WORK/out.json")"; fi
echo "$resp" | field LogResult | base64 -d | grep -E 'Task timed out|REPORT' | sed 's/^/    | /'
resp=$(invoke $FN_TO '{"mode":"ok"}')
if [ -z "$(echo "$resp" | field FunctionError)" ] && grep -q '"ok": true' "$WORK/out.json"; then ok "next invoke OK (process restarted)"; else bad "after timeout: $resp $(cat "$WORK/out.json")"; fi

step "crash -> Runtime.ExitError, then the next invoke works"
resp=$(invoke $FN '{"mode":"crash"}')
if grep -q Runtime.ExitError "$WORK/out.json"; then ok "$(cat "$WORK/out.json")"; else bad "crash: $resp $(cat "$WORK/out.json")"; fi
resp=$(invoke $FN '{}')
if [ -z "$(echo "$resp" | field FunctionError)" ]; then ok "next invoke OK"; else bad "after crash: $resp"; fi

step "CloudWatch Logs has the invocation lines"
if logs_of $FN '^REPORT RequestId' 15 | head -n 2 | sed 's/^/    | /'; then ok "log group /aws/lambda/$FN"; else bad "no REPORT line in CloudWatch Logs"; fi

step "SQS -> event source mapping (ReportBatchItemFailures) -> Lambda"
create $FN_SQS provided.al2023 10 "$WORK/fn.zip"
aws lambda wait function-active-v2 --function-name $FN_SQS
dlq_url=$(aws sqs create-queue --queue-name $DLQ --query QueueUrl --output text)
dlq_arn=$(aws sqs get-queue-attributes --queue-url "$dlq_url" --attribute-names QueueArn --query Attributes.QueueArn --output text)
cat >"$WORK/qattrs.json" <<EOF
{"VisibilityTimeout": "2", "RedrivePolicy": "{\"deadLetterTargetArn\":\"$dlq_arn\",\"maxReceiveCount\":\"2\"}"}
EOF
q_url=$(aws sqs create-queue --queue-name $Q --attributes "file://$WORK/qattrs.json" --query QueueUrl --output text)
q_arn=$(aws sqs get-queue-attributes --queue-url "$q_url" --attribute-names QueueArn --query Attributes.QueueArn --output text)
aws sqs send-message-batch --queue-url "$q_url" --entries \
  Id=1,MessageBody=good-1 Id=2,MessageBody=bad-2 Id=3,MessageBody=good-3 >/dev/null
aws lambda create-event-source-mapping --function-name $FN_SQS --event-source-arn "$q_arn" \
  --batch-size 10 --maximum-batching-window-in-seconds 1 --function-response-types ReportBatchItemFailures >/dev/null
if logs_of $FN_SQS 'SQS-BATCH size=' 40 | head -n 1 | sed 's/^/    | /'; then ok "batch delivered"; else bad "no SQS batch reached the function"; fi
deadline=$(( $(date +%s) + 40 )); in_dlq=""
while [ "$(date +%s)" -lt "$deadline" ]; do
  in_dlq=$(aws sqs receive-message --queue-url "$dlq_url" --query 'Messages[].Body' --output text 2>/dev/null || true)
  [ -n "$in_dlq" ] && [ "$in_dlq" != None ] && break
  sleep 1
done
left=$(aws sqs get-queue-attributes --queue-url "$q_url" --attribute-names ApproximateNumberOfMessages ApproximateNumberOfMessagesNotVisible --query 'Attributes' --output text)
if [ "$in_dlq" = bad-2 ]; then ok "only the failed item went to the DLQ ($in_dlq); main queue now: $left"; else bad "DLQ holds '$in_dlq' (want bad-2); main queue: $left"; fi
n_bad=$(logs_of $FN_SQS 'body=bad-2' 2 | wc -l); n_good=$(logs_of $FN_SQS 'body=good-1' 2 | wc -l)
[ "$n_bad" -ge 2 ] && [ "$n_good" -eq 1 ] && ok "bad-2 retried ${n_bad}x, good-1 processed once" || bad "bad-2 seen ${n_bad}x, good-1 seen ${n_good}x"

step "DynamoDB stream (NEW_IMAGE) -> event source mapping (TRIM_HORIZON) -> Lambda"
create $FN_DDB provided.al2023 10 "$WORK/fn.zip"
aws lambda wait function-active-v2 --function-name $FN_DDB
t0=$(date +%s.%N)
stream_arn=$(aws dynamodb create-table --table-name $TABLE --billing-mode PAY_PER_REQUEST \
  --attribute-definitions AttributeName=pk,AttributeType=S --key-schema AttributeName=pk,KeyType=HASH \
  --stream-specification StreamEnabled=true,StreamViewType=NEW_IMAGE --query TableDescription.LatestStreamArn --output text)
aws dynamodb wait table-exists --table-name $TABLE
ok "table + stream in $(awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $t0}")s: $stream_arn"
aws lambda create-event-source-mapping --function-name $FN_DDB --event-source-arn "$stream_arn" \
  --starting-position TRIM_HORIZON --batch-size 10 >/dev/null
aws dynamodb put-item --table-name $TABLE --item '{"pk":{"S":"order-1"},"status":{"S":"PLACED"}}'
t0=$(date +%s.%N)
if logs_of $FN_DDB 'DDB-RECORD INSERT' 60 | head -n 1 | sed 's/^/    | /'; then ok "put delivered (seen after $(awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $t0}")s)"; else bad "no stream record reached the function"; fi

step "nodejs runtime is refused clearly"
create $FN_NODE nodejs20.x 3 "$WORK/node.zip" index.handler
aws lambda wait function-active-v2 --function-name $FN_NODE 2>/dev/null || true
cfg=$(aws lambda get-function-configuration --function-name $FN_NODE --query '[State, StateReason]' --output text)
echo "    | $cfg"
echo "$cfg" | grep -q "^Failed" && echo "$cfg" | grep -q "provided" && ok "State=Failed with reason" || bad "nodejs function not refused: $cfg"
if out=$(invoke $FN_NODE '{}' 2>&1); then bad "nodejs invoke succeeded: $out"; else ok "invoke refused: $(echo "$out" | tr -s '\n' ' ')"; fi

echo
if [ $FAILED -eq 0 ]; then echo "ALL CHECKS PASSED"; else echo "SOME CHECKS FAILED"; exit 1; fi
