"""The local Lambda executor against real bootstrap processes.

Each test writes a small Python `bootstrap` that speaks the Lambda Runtime API (GET
`invocation/next`, POST `response`/`error`/`init/error`) and runs it through
`OrderflowLocalExecutor` exactly as LocalStack does: `start(env)`, `invoke(payload)`,
`stop()`. Only LocalStack's side is stood in for: the function version is LocalStack's own
dataclass with a code object that points at a temporary folder. The executor's server,
process handling, timeout and crash paths all run for real.

What AWS does, and the executor copies (Lambda Developer Guide):
- "Using the Lambda runtime API for custom runtimes"
  (https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html): the `next` headers,
  `response`, `error` with `Lambda-Runtime-Function-Error-Type`, `init/error`.
- "Understanding the Lambda execution environment lifecycle"
  (https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtime-environment.html): after a
  timeout or a runtime crash the environment is reset, and the next invoke initialises again.
"""

from __future__ import annotations

import json
import sys
import textwrap
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest
from localstack.services.lambda_.invocation.executor_endpoint import StatusErrorException
from localstack.services.lambda_.invocation.lambda_models import (
    FunctionVersion,
    VersionFunctionConfiguration,
    VersionIdentifier,
)
from localstack.services.lambda_.invocation.runtime_executor import LambdaRuntimeException

from orderflow_local_lambda import executor as executor_module
from orderflow_local_lambda.executor import (
    MAX_LOG_BYTES,
    OrderflowLocalExecutor,
    is_supported_runtime,
)

ARN = "arn:aws:lambda:us-east-1:000000000000:function:orderflow-test-probe"
# Every wait in these tests ends by this deadline; the executor's own waits are bounded by
# the function timeout, so only a broken executor gets near it.
DEADLINE_S = 30

# A bootstrap that does what the invocation's event asks. It records every process start
# in $STATE_DIR/boots (one pid a line), so tests can count (re)initialisations.
BOOTSTRAP = textwrap.dedent(
    """\
    #!{python}
    import http.client, json, os, signal, subprocess, sys, time, urllib.request

    api = os.environ["AWS_LAMBDA_RUNTIME_API"]
    prefix = "/2018-06-01/runtime"
    state = os.environ["STATE_DIR"]
    with open(os.path.join(state, "boots"), "a") as f:
        f.write(f"{{os.getpid()}}\\n")

    def request(method, path, body=None, headers=None, chunked=False):
        conn = http.client.HTTPConnection(api, timeout=60)
        conn.request(method, prefix + path, body=body, headers=headers or {{}},
                     encode_chunked=chunked)
        resp = conn.getresponse()
        resp.read()
        conn.close()
        return resp.status

    def respond(rid, doc):
        request("POST", f"/invocation/{{rid}}/response", json.dumps(doc).encode())

    init = os.environ.get("INIT")
    if init == "error":
        request("POST", "/init/error",
                json.dumps({{"errorType": "Init.Broken", "errorMessage": "no config"}}).encode())
        sys.exit(1)
    if init == "exit":
        print("giving up before init", flush=True)
        sys.exit(7)

    while True:
        with urllib.request.urlopen(f"http://{{api}}{{prefix}}/invocation/next") as r:
            rid = r.headers["Lambda-Runtime-Aws-Request-Id"]
            headers = {{k: r.headers[k] for k in (
                "Lambda-Runtime-Aws-Request-Id", "Lambda-Runtime-Deadline-Ms",
                "Lambda-Runtime-Invoked-Function-Arn", "Lambda-Runtime-Trace-Id")}}
            event = json.loads(r.read())
        action = event["action"]
        print(f"handling {{action}} {{event.get('marker', '')}}", flush=True)
        if action == "echo":
            env = {{k: os.environ.get(k) for k in (
                "AWS_LAMBDA_RUNTIME_API", "LAMBDA_TASK_ROOT", "PATH", "FROM_LOCALSTACK", "OVERRIDDEN")}}
            respond(rid, {{"event": event, "headers": headers, "pid": os.getpid(),
                          "cwd": os.getcwd(), "env": env}})
        elif action == "fail":
            request("POST", f"/invocation/{{rid}}/error",
                    json.dumps({{"errorMessage": "card declined"}}).encode(),
                    {{"Lambda-Runtime-Function-Error-Type": "Handler.Failed"}})
        elif action == "sleep":
            if event.get("grandchild"):
                child = subprocess.Popen(["sleep", "300"])
                with open(os.path.join(state, "grandchild"), "w") as f:
                    f.write(str(child.pid))
            open(os.path.join(state, "sleeping"), "w").close()
            time.sleep(event["seconds"])
            respond(rid, {{"slept": True}})
        elif action == "exit":
            sys.exit(event["code"])
        elif action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif action == "chatter":
            line = "x" * 1023 + "\\n"
            sys.stdout.write("FIRST-LINE\\n" + line * (event["bytes"] // len(line)) + "LAST-LINE\\n")
            sys.stdout.flush()
            respond(rid, {{"chatted": True}})
        elif action == "probe":
            statuses = {{
                "unknown_request_id": request("POST", "/invocation/not-a-request/response", b"{{}}"),
                "unknown_get": request("GET", "/nothing-here"),
                "unknown_post": request("POST", "/invocation/" + rid + "/elsewhere", b"{{}}"),
            }}
            # A chunked response body, as lambda_runtime sends in streaming mode.
            body = json.dumps({{"statuses": statuses}}).encode()
            request("POST", f"/invocation/{{rid}}/response",
                    iter([body[:7], body[7:]]), chunked=True)
    """
)


def _function_version(code_dir: Path, runtime: str | None, timeout: int, environment: dict) -> FunctionVersion:
    code = SimpleNamespace(
        get_unzipped_code_location=lambda: code_dir,
        prepare_for_execution=lambda: (code_dir / ".prepared").touch(),
    )
    config = VersionFunctionConfiguration(
        description="",
        role="arn:aws:iam::000000000000:role/probe",
        timeout=timeout,
        runtime=runtime,
        memory_size=128,
        handler="bootstrap",
        package_type="Zip",
        environment=environment,
        architectures=["x86_64"],
        internal_revision="1",
        ephemeral_storage=None,
        snap_start=None,
        tracing_config_mode="PassThrough",
        code=code,
        last_modified="2026-11-21T00:00:00.000+0000",
        state=None,
    )
    ident = VersionIdentifier(function_name="orderflow-test-probe", qualifier="$LATEST",
                              region="us-east-1", account="000000000000")
    return FunctionVersion(id=ident, config=config)


class Function:
    """A function's code folder, state folder and executor; every executor is stopped at the end."""

    def __init__(self, tmp_path: Path):
        self.code_dir = tmp_path / "code"
        self.state_dir = tmp_path / "state"
        self.code_dir.mkdir()
        self.state_dir.mkdir()
        self.executors: list[OrderflowLocalExecutor] = []
        self.pool = ThreadPoolExecutor(max_workers=4)

    def write_bootstrap(self, text: str | bytes | None = None) -> None:
        path = self.code_dir / "bootstrap"
        text = BOOTSTRAP.format(python=sys.executable) if text is None else text
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        path.chmod(0o755)

    def executor(self, runtime="provided.al2023", timeout=5, environment=None) -> OrderflowLocalExecutor:
        env = {"STATE_DIR": str(self.state_dir), **(environment or {})}
        ex = OrderflowLocalExecutor(f"env-{uuid.uuid4().hex}", _function_version(self.code_dir, runtime, timeout, env))
        self.executors.append(ex)
        return ex

    def within_deadline(self, fn, *args):
        """Runs fn in a worker thread; fails the test if it has not returned by DEADLINE_S."""
        return self.pool.submit(fn, *args).result(timeout=DEADLINE_S)

    def start(self, ex: OrderflowLocalExecutor, env_vars: dict | None = None) -> None:
        self.within_deadline(ex.start, env_vars or {"AWS_ENDPOINT_URL": "http://127.0.0.1:4566"})

    def invoke(self, ex: OrderflowLocalExecutor, event: dict, request_id: str | None = None):
        payload = {
            "invoke-id": request_id or str(uuid.uuid4()),
            "invoked-function-arn": ARN,
            "payload": json.dumps(event),
            "trace-id": "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1",
        }
        return self.within_deadline(ex.invoke, payload)

    def boots(self) -> list[int]:
        path = self.state_dir / "boots"
        return [int(line) for line in path.read_text().split()] if path.exists() else []

    def wait_for_file(self, name: str) -> Path:
        path = self.state_dir / name
        deadline = time.monotonic() + DEADLINE_S
        while not path.exists():
            assert time.monotonic() < deadline, f"the bootstrap never wrote {name}"
            time.sleep(0.01)
        return path

    def close(self) -> None:
        for ex in self.executors:
            ex.stop()
        self.pool.shutdown(wait=False, cancel_futures=True)


@pytest.fixture
def fn(tmp_path):
    function = Function(tmp_path)
    yield function
    function.close()


def wait_until_gone(pid: int) -> None:
    """A killed process is gone once it no longer exists or is a zombie (dead, not reaped)."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        assert time.monotonic() < deadline, f"process {pid} still runs"
        time.sleep(0.01)


def error_of(result) -> dict:
    assert result.is_error, result
    return json.loads(result.payload)


def report_line(logs: str) -> str:
    [line] = [line for line in logs.splitlines() if line.startswith("REPORT RequestId:")]
    return line


# ------------------------------------------------------------------ Runtime API server


def test_an_invocation_reaches_the_bootstrap_with_the_runtime_api_headers_and_environment(fn):
    fn.write_bootstrap()
    ex = fn.executor(timeout=7, environment={"OVERRIDDEN": "by the function"})
    fn.start(ex, {"FROM_LOCALSTACK": "yes", "OVERRIDDEN": "by localstack", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": 128})
    rid = str(uuid.uuid4())
    before_ms = time.time() * 1000
    result = fn.invoke(ex, {"action": "echo", "marker": "m-1"}, rid)

    assert not result.is_error
    assert result.request_id == rid
    answer = json.loads(result.payload)
    assert answer["event"] == {"action": "echo", "marker": "m-1"}
    headers = answer["headers"]
    assert headers["Lambda-Runtime-Aws-Request-Id"] == rid
    assert headers["Lambda-Runtime-Invoked-Function-Arn"] == ARN
    assert headers["Lambda-Runtime-Trace-Id"].startswith("Root=1-5759e988")
    deadline_ms = int(headers["Lambda-Runtime-Deadline-Ms"])
    assert before_ms + 6000 < deadline_ms <= time.time() * 1000 + 7000

    code_dir = str(fn.code_dir)
    assert answer["cwd"] == code_dir
    env = answer["env"]
    assert env["LAMBDA_TASK_ROOT"] == code_dir
    assert env["AWS_LAMBDA_RUNTIME_API"].startswith("127.0.0.1:")
    assert ex.get_runtime_endpoint() == f"http://{env['AWS_LAMBDA_RUNTIME_API']}/2018-06-01/runtime"
    assert env["PATH"] == "/usr/local/bin:/usr/bin:/bin:/opt/bin"
    assert env["FROM_LOCALSTACK"] == "yes"
    assert env["OVERRIDDEN"] == "by the function"


def test_logs_have_start_end_report_and_only_this_invocations_output(fn):
    fn.write_bootstrap()
    ex = fn.executor()
    fn.start(ex)
    first = fn.invoke(ex, {"action": "echo", "marker": "first"}, "req-1")
    second = fn.invoke(ex, {"action": "echo", "marker": "second"}, "req-2")

    lines = first.logs.splitlines()
    assert lines[0] == "START RequestId: req-1 Version: $LATEST"
    assert "handling echo first" in lines
    assert lines[-2] == "END RequestId: req-1"
    assert report_line(first.logs).startswith("REPORT RequestId: req-1\tDuration: ")
    assert "Memory Size: 128 MB" in report_line(first.logs)
    # Init Duration is reported once, on the first invocation of a process.
    assert "Init Duration: " in report_line(first.logs)
    assert "Init Duration: " not in report_line(second.logs)
    assert "handling echo second" in second.logs
    assert "first" not in second.logs
    assert ex.get_logs() == second.logs
    assert len(fn.boots()) == 1


def test_a_function_error_is_returned_with_its_type_and_the_process_is_kept(fn):
    fn.write_bootstrap()
    ex = fn.executor()
    fn.start(ex)
    result = fn.invoke(ex, {"action": "fail"})

    # The runtime posted only an errorMessage; the type comes from its header.
    assert error_of(result) == {"errorMessage": "card declined", "errorType": "Handler.Failed"}
    assert "Status:" not in report_line(result.logs)
    assert not fn.invoke(ex, {"action": "echo"}).is_error
    assert len(fn.boots()) == 1


def test_the_api_refuses_unknown_request_ids_and_paths_and_reads_chunked_bodies(fn):
    fn.write_bootstrap()
    ex = fn.executor()
    fn.start(ex)
    result = fn.invoke(ex, {"action": "probe"})

    assert not result.is_error, result.payload
    assert json.loads(result.payload) == {
        "statuses": {"unknown_request_id": 400, "unknown_get": 404, "unknown_post": 404}
    }


# ------------------------------------------------------------------------- timeout


def test_a_timeout_reports_sandbox_timedout_kills_the_process_tree_and_the_next_invoke_reinitialises(fn):
    fn.write_bootstrap()
    ex = fn.executor(timeout=1)
    fn.start(ex)
    [first_pid] = fn.boots()
    started = time.monotonic()
    result = fn.invoke(ex, {"action": "sleep", "seconds": 120, "grandchild": True}, "req-slow")
    elapsed = time.monotonic() - started

    assert error_of(result) == {
        "errorType": "Sandbox.Timedout",
        "errorMessage": "RequestId: req-slow Error: Task timed out after 1.00 seconds",
    }
    assert 1.0 <= elapsed < 10, elapsed
    assert "handling sleep" in result.logs
    assert "RequestId: req-slow Error: Task timed out after 1.00 seconds" in result.logs
    assert report_line(result.logs).endswith("\tStatus: timeout")
    wait_until_gone(first_pid)
    wait_until_gone(int((fn.state_dir / "grandchild").read_text()))

    after = fn.invoke(ex, {"action": "echo"})
    assert not after.is_error
    boots = fn.boots()
    assert len(boots) == 2 and json.loads(after.payload)["pid"] == boots[1] != first_pid
    assert "Init Duration: " in report_line(after.logs)


# --------------------------------------------------------------------------- crash


def test_a_crash_reports_runtime_exit_error_and_the_next_invoke_starts_a_new_process(fn):
    fn.write_bootstrap()
    ex = fn.executor()
    fn.start(ex)
    result = fn.invoke(ex, {"action": "exit", "code": 3}, "req-crash")

    assert error_of(result) == {
        "errorType": "Runtime.ExitError",
        "errorMessage": "RequestId: req-crash Error: Runtime exited with error: exit status 3",
    }
    assert "handling exit" in result.logs
    assert report_line(result.logs).endswith("\tStatus: error")

    after = fn.invoke(ex, {"action": "echo"})
    assert not after.is_error
    assert len(fn.boots()) == 2
    assert json.loads(after.payload)["pid"] == fn.boots()[1]


def test_a_process_killed_by_a_signal_is_reported_with_the_signal(fn):
    fn.write_bootstrap()
    ex = fn.executor()
    fn.start(ex)
    result = fn.invoke(ex, {"action": "kill"}, "req-kill")

    assert error_of(result)["errorMessage"] == "RequestId: req-kill Error: Runtime exited with error: signal: kill"
    assert not fn.invoke(ex, {"action": "echo"}).is_error


def test_init_errors_fail_start_with_the_runtimes_payload(fn):
    fn.write_bootstrap()
    ex = fn.executor(environment={"INIT": "error"})
    with pytest.raises(StatusErrorException) as raised:
        fn.start(ex)
    assert json.loads(raised.value.payload) == {"errorType": "Init.Broken", "errorMessage": "no config"}


def test_a_process_that_exits_during_init_fails_start_with_runtime_exit_error(fn):
    fn.write_bootstrap()
    ex = fn.executor(environment={"INIT": "exit"})
    with pytest.raises(StatusErrorException) as raised:
        fn.start(ex)
    assert json.loads(raised.value.payload) == {
        "errorType": "Runtime.ExitError",
        "errorMessage": "Error: Runtime exited with error: exit status 7",
    }
    assert "giving up before init" in ex.get_logs()


def test_a_missing_or_foreign_bootstrap_is_an_invalid_entrypoint(fn):
    ex = fn.executor()
    with pytest.raises(StatusErrorException) as raised:
        fn.start(ex)
    assert json.loads(raised.value.payload)["errorType"] == "Runtime.InvalidEntrypoint"

    fn.write_bootstrap(b"\x7fELF but not really")
    with pytest.raises(StatusErrorException) as raised:
        fn.start(fn.executor())
    error = json.loads(raised.value.payload)
    assert error["errorType"] == "Runtime.InvalidEntrypoint"
    assert "build it for this host" in error["errorMessage"]


def test_stop_during_an_invocation_kills_the_process_and_fails_the_invoke(fn):
    fn.write_bootstrap()
    ex = fn.executor(timeout=60)
    fn.start(ex)
    [pid] = fn.boots()
    pending = fn.pool.submit(ex.invoke, {"invoke-id": "req-stopped", "invoked-function-arn": ARN,
                                         "payload": json.dumps({"action": "sleep", "seconds": 120})})
    fn.wait_for_file("sleeping")
    ex.stop()

    with pytest.raises(LambdaRuntimeException, match="stopped during invoke"):
        pending.result(timeout=DEADLINE_S)
    wait_until_gone(pid)
    with pytest.raises(LambdaRuntimeException, match="is stopped"):
        fn.invoke(ex, {"action": "echo"})


# ----------------------------------------------------------------- runtime refusal


@pytest.mark.parametrize("runtime", ["nodejs20.x", "python3.12", "java21"])
def test_other_runtimes_are_refused_before_anything_runs(fn, runtime):
    fn.write_bootstrap()
    ex = fn.executor(runtime=runtime)
    assert not is_supported_runtime(runtime)

    # prepare_version failing puts the function in State=Failed with this StateReason.
    with pytest.raises(LambdaRuntimeException, match=f"runtime '{runtime}' not supported here"):
        OrderflowLocalExecutor.prepare_version(ex.function_version)
    with pytest.raises(StatusErrorException) as raised:
        fn.start(ex)
    assert json.loads(raised.value.payload)["errorType"] == "Runtime.InvalidRuntime"
    assert fn.boots() == []
    assert not (fn.code_dir / ".prepared").exists()


def test_container_images_are_refused_and_provided_runtimes_prepared(fn):
    with pytest.raises(LambdaRuntimeException, match="container-image functions not supported"):
        OrderflowLocalExecutor.prepare_version(fn.executor(runtime=None).function_version)
    for runtime in ("provided.al2023", "provided.al2", "provided"):
        assert is_supported_runtime(runtime)
        OrderflowLocalExecutor.prepare_version(fn.executor(runtime=runtime).function_version)
        assert (fn.code_dir / ".prepared").exists()


# ------------------------------------------------------------------- log limits


def test_an_invocations_logs_keep_the_last_max_log_bytes_of_output(fn):
    fn.write_bootstrap()
    ex = fn.executor()
    fn.start(ex)
    result = fn.invoke(ex, {"action": "chatter", "bytes": 4 * MAX_LOG_BYTES}, "req-chatty")

    assert not result.is_error
    output = result.logs.split("\n", 1)[1].rsplit("END RequestId:", 1)[0]
    assert len(output.encode()) <= MAX_LOG_BYTES
    assert len(output.encode()) > MAX_LOG_BYTES - 2048  # the limit, not much less
    assert "FIRST-LINE" not in result.logs  # the oldest output went first
    assert "LAST-LINE" in output
    assert result.logs.startswith("START RequestId: req-chatty")
    assert "REPORT RequestId: req-chatty" in result.logs

    quiet = fn.invoke(ex, {"action": "echo", "marker": "after"})
    assert "xxxx" not in quiet.logs


def test_sandboxes_are_tracked_until_stopped(fn):
    fn.write_bootstrap()
    ex = fn.executor()
    fn.start(ex)
    [pid] = fn.boots()
    assert any(s.proc.pid == pid for s in executor_module._live_sandboxes)
    ex.stop()
    wait_until_gone(pid)
    assert not any(s.proc.pid == pid for s in executor_module._live_sandboxes)


if __name__ == "__main__":  # pragma: no cover - convenience for a single run
    sys.exit(pytest.main([__file__, "-q"]))
