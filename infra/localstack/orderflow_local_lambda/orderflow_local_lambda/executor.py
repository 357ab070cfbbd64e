"""A LocalStack Lambda executor that runs `provided.*` functions as local processes.

Stock LocalStack runs every function in a Docker container driven by its Go `init`
program. This machine has no Docker, and our functions are Rust `lambda_runtime`
binaries that only need the Lambda Runtime API, so we serve that API ourselves and run
the function's `bootstrap` directly on the host.

Shape:
- `_Sandbox`: one bootstrap process + the Runtime API server it polls. After a timeout
  or crash the whole sandbox is thrown away and a new one is built on the next invoke
  (like AWS resetting the execution environment), so a stale process can never pick up
  a new invocation.
- `OrderflowLocalExecutor`: LocalStack's `RuntimeExecutor` interface on top of it.
- `OrderflowLocalExecutorPlugin`: the entry point (`LAMBDA_RUNTIME_EXECUTOR=orderflow-local`).
"""

from __future__ import annotations

import atexit
import ctypes
import fcntl
import json
import logging
import os
import queue
import signal
import subprocess
import termios
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psutil
from localstack.services.lambda_.invocation.executor_endpoint import (
    ShutdownDuringStartup,
    StatusErrorException,
)
from localstack.services.lambda_.invocation.lambda_models import FunctionVersion, InvocationResult
from localstack.services.lambda_.invocation.plugins import RuntimeExecutorPlugin
from localstack.services.lambda_.invocation.runtime_executor import (
    LambdaRuntimeException,
    RuntimeExecutor,
)

from . import usage

LOG = logging.getLogger(__name__)

API_PREFIX = "/2018-06-01/runtime"
# Same defaults a provided.al2023 sandbox has; the function's own env vars override them.
BASE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin:/opt/bin", "LANG": "en_US.UTF-8"}
MAX_LOG_BYTES = 256 * 1024  # per invocation; a chatty loop must not eat LocalStack's memory

_live_sandboxes: weakref.WeakSet[_Sandbox] = weakref.WeakSet()

# PR_SET_PDEATHSIG kills the child when the *thread* that forked it exits, not the
# process. LocalStack starts environments from short-lived worker threads, so all
# bootstraps are forked from this one long-lived thread instead.
_SPAWNER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="orderflow-lambda-spawn")
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass  # not glibc/Linux: stop.sh's process-group kill still covers us


def is_supported_runtime(runtime: str | None) -> bool:
    return bool(runtime) and runtime.startswith("provided")


def _refusal(runtime: str | None) -> str:
    what = f"runtime {runtime!r}" if runtime else "container-image functions"
    return (
        f"orderflow-local Lambda executor: {what} not supported here. It runs only "
        "provided.al2023/provided.al2/provided functions (a `bootstrap` executable built "
        "for this host). Use Runtime=provided.al2023 or run LocalStack with Docker."
    )


class _Invocation:
    def __init__(self, payload: dict):
        self.request_id: str = payload["invoke-id"]
        self.arn: str = payload["invoked-function-arn"]
        self.trace_id: str = payload.get("trace-id") or ""
        self.body: bytes = (payload.get("payload") or "").encode()
        self.deadline_ms = 0
        self.done = False
        self.is_error = False
        self.result = b""


class _RuntimeApiHandler(BaseHTTPRequestHandler):
    """The Lambda Runtime API, as the bootstrap sees it at AWS_LAMBDA_RUNTIME_API."""

    protocol_version = "HTTP/1.1"  # keep-alive, as lambda_runtime (hyper) expects
    server: _RuntimeApiServer

    def log_message(self, format, *args):  # noqa: A002 - keep LocalStack's log clean
        LOG.debug("runtime api %s: " + format, self.server.sandbox.name, *args)

    def _reply(self, status: int, body: bytes = b"", headers: dict | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> bytes:
        if "chunked" not in (self.headers.get("Transfer-Encoding") or "").lower():
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))
        # Streaming clients (e.g. lambda_runtime's streaming mode) send chunked bodies.
        data = bytearray()
        while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
            data += self.rfile.read(size)
            self.rfile.readline()  # CRLF after each chunk
        while self.rfile.readline().strip():  # optional trailers, then the blank line
            pass
        return bytes(data)

    def do_GET(self):
        if self.path != f"{API_PREFIX}/invocation/next":
            return self._reply(404, b'{"errorType":"NotFound"}')
        inv = self.server.sandbox.next_invocation()  # blocks, like the real API
        if inv is None:  # sandbox is being torn down
            self.close_connection = True
            return self._reply(HTTPStatus.GONE, b'{"errorType":"Sandbox.Shutdown"}')
        self._reply(
            200,
            inv.body,
            {
                "Lambda-Runtime-Aws-Request-Id": inv.request_id,
                "Lambda-Runtime-Deadline-Ms": str(inv.deadline_ms),
                "Lambda-Runtime-Invoked-Function-Arn": inv.arn,
                "Lambda-Runtime-Trace-Id": inv.trace_id,
            },
        )

    def do_POST(self):
        body = self._body()
        parts = self.path[len(API_PREFIX) :].strip("/").split("/")
        error_type = self.headers.get("Lambda-Runtime-Function-Error-Type") or "Runtime.Unknown"
        sandbox = self.server.sandbox
        if parts == ["init", "error"]:
            sandbox.on_init_error(_error_body(body, error_type))
        elif len(parts) == 3 and parts[0] == "invocation" and parts[2] in ("response", "error"):
            is_error = parts[2] == "error"
            if not sandbox.complete(parts[1], _error_body(body, error_type) if is_error else body, is_error):
                return self._reply(
                    400, b'{"errorType":"InvalidRequestID","errorMessage":"unknown or finished request id"}'
                )
        else:
            return self._reply(404, b'{"errorType":"NotFound"}')
        self._reply(HTTPStatus.ACCEPTED, b'{"status":"OK"}')


def _error_body(body: bytes, error_type: str) -> bytes:
    """Runtimes usually post {"errorType","errorMessage"}; fill in what they leave out."""
    try:
        doc = json.loads(body) if body else {}
    except ValueError:
        doc = {"errorMessage": body.decode(errors="replace")}
    if not isinstance(doc, dict):
        doc = {"errorMessage": str(doc)}
    doc.setdefault("errorType", error_type)
    doc.setdefault("errorMessage", "")
    return json.dumps(doc).encode()


class _RuntimeApiServer(ThreadingHTTPServer):
    daemon_threads = True  # a handler blocked in `next` must not keep anything alive
    sandbox: _Sandbox

    def handle_error(self, request, client_address):
        # A killed bootstrap leaves its `next` connection half-open; replying to it fails.
        # That is expected during teardown and not worth a traceback in LocalStack's log.
        LOG.debug("runtime api %s: connection error from %s", self.sandbox.name, client_address, exc_info=True)


class _Sandbox:
    """One bootstrap process and its private Runtime API server (port 0 = a free port)."""

    def __init__(self, name: str, code_dir: str, env: dict[str, str]):
        self.name = name
        self.changed = threading.Condition()  # guards every field below; notified on change
        self.ready = False  # bootstrap asked for its first invocation: init is over
        self.init_error: bytes | None = None
        self.exit_code: int | None = None
        self.stopping = False
        self.current: _Invocation | None = None
        self.pending: queue.Queue[_Invocation | None] = queue.Queue()
        self.output = bytearray()
        self.started = time.monotonic()

        self.server = _RuntimeApiServer(("127.0.0.1", 0), _RuntimeApiHandler)
        self.server.sandbox = self
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.1},
            name=f"lambda-api-{name}", daemon=True,
        ).start()

        env = {**env, "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{self.server.server_address[1]}"}
        read_fd, write_fd = os.pipe()
        try:
            # stdout and stderr share one pipe: AWS puts both into the log stream, in order.
            self.proc = _SPAWNER.submit(
                subprocess.Popen,
                [os.path.join(code_dir, "bootstrap")],
                cwd=code_dir, env=env, stdin=subprocess.DEVNULL,
                stdout=write_fd, stderr=write_fd, preexec_fn=_die_with_parent,
            ).result()
        except BaseException:
            os.close(read_fd)
            self.server.shutdown()
            self.server.server_close()
            raise
        finally:
            os.close(write_fd)
        self.out_fd = read_fd
        _live_sandboxes.add(self)
        self.pump = threading.Thread(target=self._pump_output, name=f"lambda-out-{name}", daemon=True)
        self.pump.start()
        threading.Thread(target=self._wait_exit, name=f"lambda-wait-{name}", daemon=True).start()

    # -- process plumbing
    def _pump_output(self) -> None:
        # Reads until EOF (every writer gone). kill() closes the fd afterwards, so
        # take_output() never pokes at a closed (or reused) fd number.
        while chunk := os.read(self.out_fd, 65536):
            with self.changed:
                self.output += chunk
                del self.output[: max(0, len(self.output) - MAX_LOG_BYTES)]

    def _wait_exit(self) -> None:
        code = self.proc.wait()
        with self.changed:
            self.exit_code = code
            self.changed.notify_all()

    def take_output(self) -> str:
        """Output since the last call. The bootstrap writes its logs before it posts the
        response, but our pump thread may not have read them yet: wait (briefly) until
        the pipe is empty so each invocation gets its own lines. Call before kill()."""
        for _ in range(40):
            pending = ctypes.c_int(0)
            try:
                fcntl.ioctl(self.out_fd, termios.FIONREAD, pending)
            except OSError:
                break  # pipe closed: everything was read
            if pending.value == 0:
                break
            time.sleep(0.005)
        time.sleep(0.002)  # let the pump append what it just read
        with self.changed:
            text = self.output.decode(errors="replace")
            self.output.clear()
        return text

    def max_rss_mb(self) -> int:
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return max(1, int(line.split()[1]) // 1024)
        except OSError:
            pass
        return 0

    # -- called by the Runtime API handlers
    def next_invocation(self) -> _Invocation | None:
        with self.changed:
            self.ready = True
            self.changed.notify_all()
        return self.pending.get()

    def on_init_error(self, body: bytes) -> None:
        with self.changed:
            self.init_error = body
            self.changed.notify_all()

    def complete(self, request_id: str, body: bytes, is_error: bool) -> bool:
        with self.changed:
            inv = self.current
            if inv is None or inv.request_id != request_id or inv.done:
                return False
            inv.done, inv.result, inv.is_error = True, body, is_error
            self.changed.notify_all()
            return True

    # -- called by the executor
    def wait_ready(self) -> bytes | None:
        """Block until init is over. Returns an error payload (JSON) if init failed."""
        with self.changed:
            self.changed.wait_for(
                lambda: self.ready or self.init_error or self.exit_code is not None or self.stopping
            )
            if self.stopping:
                raise ShutdownDuringStartup("execution environment stopped during startup")
            if self.init_error:
                return self.init_error
            if self.exit_code is not None and not self.ready:
                return _exit_error(None, self.exit_code)
        return None

    def run(self, inv: _Invocation, timeout_s: float) -> str:
        """Hand `inv` to the bootstrap and wait. Returns "done", "timeout" or "exit"."""
        with self.changed:
            self.current = inv
        self.pending.put(inv)
        with self.changed:
            finished = self.changed.wait_for(
                lambda: inv.done or self.exit_code is not None or self.stopping, timeout=timeout_s
            )
            if inv.done:
                return "done"
            return "exit" if finished else "timeout"

    def kill(self) -> None:
        """Kill the bootstrap and everything it started, and close its API server."""
        with self.changed:
            if self.stopping:
                return  # already killed (stop() and atexit may both get here)
            self.stopping = True
            self.changed.notify_all()
        try:
            procs = psutil.Process(self.proc.pid).children(recursive=True)
            procs.append(psutil.Process(self.proc.pid))
        except psutil.Error:
            procs = []
        for p in procs:
            try:
                p.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(procs, timeout=2)
        self.pump.join(timeout=2)
        if not self.pump.is_alive():  # else a stray grandchild still holds the pipe
            os.close(self.out_fd)
        self.pending.put(None)  # wake any handler still blocked in `next`
        self.server.shutdown()
        self.server.server_close()
        _live_sandboxes.discard(self)


def _exit_error(request_id: str | None, code: int) -> bytes:
    reason = f"signal: {signal.Signals(-code).name.lower()[3:]}" if code < 0 else f"exit status {code}"
    prefix = f"RequestId: {request_id} " if request_id else ""
    return json.dumps(
        {"errorType": "Runtime.ExitError", "errorMessage": f"{prefix}Error: Runtime exited with error: {reason}"}
    ).encode()


@atexit.register
def _kill_all_sandboxes() -> None:
    # LocalStack normally stops environments on shutdown; this covers the rest.
    for sandbox in list(_live_sandboxes):
        try:
            sandbox.kill()
        except Exception:  # noqa: BLE001 - best effort at interpreter exit
            pass


class OrderflowLocalExecutor(RuntimeExecutor):
    """One LocalStack execution environment = at most one live `_Sandbox` at a time."""

    def __init__(self, id: str, function_version: FunctionVersion) -> None:  # noqa: A002
        super().__init__(id, function_version)
        self._lock = threading.Lock()  # LocalStack sends one invoke at a time; stop() may race
        self._sandbox: _Sandbox | None = None
        self._env: dict[str, str] = {}
        self._code_dir = ""
        self._stopped = False
        self._init_ms: float | None = None  # reported once, on the first REPORT after a (re)start
        self._recent_logs = ""

    # -- environment lifecycle
    def start(self, env_vars: dict[str, str]) -> None:
        runtime = self.function_version.config.runtime
        if not is_supported_runtime(runtime):
            raise StatusErrorException(_refusal(runtime), payload=_payload("Runtime.InvalidRuntime", _refusal(runtime)))
        self._code_dir = str(self.function_version.config.code.get_unzipped_code_location())
        # LocalStack's values describe a container (/var/task) and may be ints. The
        # function's own variables win, as they do in LocalStack's env_vars.
        self._env = {
            **BASE_ENV,
            **{k: str(v) for k, v in env_vars.items() if v is not None},
            "LAMBDA_TASK_ROOT": self._code_dir,
            **{k: str(v) for k, v in (self.function_version.config.environment or {}).items()},
        }
        error = self._boot()
        if error is not None:
            # LocalStack turns this into the invoke's FunctionError payload.
            raise StatusErrorException("bootstrap failed to initialise", payload=error)

    def _boot(self) -> bytes | None:
        """Start a fresh sandbox and wait for init. Returns an error payload on failure."""
        code_dir = self._code_dir
        bootstrap = os.path.join(code_dir, "bootstrap")
        if not os.path.isfile(bootstrap):
            return _payload("Runtime.InvalidEntrypoint", f"Couldn't find valid bootstrap(s): [{bootstrap}]")
        started = time.monotonic()
        try:
            sandbox = _Sandbox(self.id[:8], code_dir, self._env)
        except OSError as e:  # e.g. ENOEXEC: built for another architecture
            return _payload("Runtime.InvalidEntrypoint", f"cannot execute {bootstrap}: {e} (build it for this host)")
        self._sandbox = sandbox
        error = sandbox.wait_ready()
        if error is not None:
            output = sandbox.take_output()
            LOG.warning("Lambda %s init failed: %s\n%s", self._name(), error.decode(), output[-4000:])
            self._recent_logs = output
            self._discard()
            return error
        self._init_ms = (time.monotonic() - started) * 1000
        return None

    def _discard(self) -> None:
        if self._sandbox is not None:
            self._sandbox.kill()
            self._sandbox = None

    def stop(self) -> None:
        self._stopped = True
        sandbox, self._sandbox = self._sandbox, None
        if sandbox is not None:
            sandbox.kill()

    # -- invocations
    def invoke(self, payload: dict[str, str]) -> InvocationResult:
        inv = _Invocation(payload)
        rid = inv.request_id
        with self._lock:
            if self._stopped:
                raise LambdaRuntimeException(f"execution environment {self.id} is stopped")
            lines = [f"START RequestId: {rid} Version: {self.function_version.id.qualifier}"]
            if self._sandbox is None or self._sandbox.exit_code is not None:
                # Previous process timed out or crashed: re-init, like AWS does.
                self._discard()
                error = self._boot()
                if error is not None:
                    lines += [self._recent_logs.rstrip("\n"), f"END RequestId: {rid}",
                              f"REPORT RequestId: {rid}\tDuration: 0.00 ms\tStatus: error"]
                    return InvocationResult(rid, error, is_error=True, logs=_join(lines))

            timeout_s = float(self.function_version.config.timeout)
            started = time.monotonic()
            inv.deadline_ms = int((time.time() + timeout_s) * 1000)
            sandbox = self._sandbox
            outcome = sandbox.run(inv, timeout_s)
            duration_ms = (time.monotonic() - started) * 1000
            memory_mb = sandbox.max_rss_mb()
            status = ""
            if outcome == "exit" and (self._stopped or sandbox.stopping):
                raise LambdaRuntimeException(f"execution environment {self.id} stopped during invoke")
            output = sandbox.take_output()
            if outcome == "done":
                body, is_error = inv.result, inv.is_error
            elif outcome == "timeout":
                # AWS: kill the sandbox, report Sandbox.Timedout; the next invoke re-inits.
                message = f"RequestId: {rid} Error: Task timed out after {timeout_s:.2f} seconds"
                body, is_error, status = _payload("Sandbox.Timedout", message), True, "timeout"
            else:
                body, is_error, status = _exit_error(rid, sandbox.exit_code), True, "error"
            if status:
                self._discard()
                output += json.loads(body)["errorMessage"] + "\n"

            lines.append(output.rstrip("\n"))
            lines.append(f"END RequestId: {rid}")
            report = (
                f"REPORT RequestId: {rid}\tDuration: {duration_ms:.2f} ms\t"
                f"Billed Duration: {max(1, int(duration_ms + 0.999))} ms\t"
                f"Memory Size: {self.function_version.config.memory_size} MB\t"
                f"Max Memory Used: {memory_mb} MB"
            )
            init_ms, self._init_ms = self._init_ms, None
            if init_ms is not None:
                report += f"\tInit Duration: {init_ms:.2f} ms"
            if status:
                report += f"\tStatus: {status}"
            lines.append(report)
            usage.record_invocation(
                self._name(), rid, duration_ms, init_ms, self.function_version.config.memory_size, status
            )
            logs = _join(lines)
            self._recent_logs = logs
            return InvocationResult(rid, body, is_error=is_error, logs=logs)

    def get_logs(self) -> str:
        return self._recent_logs

    # -- addresses: everything is on this host
    def get_address(self) -> str:
        return "127.0.0.1"

    def get_endpoint_from_executor(self) -> str:
        # Becomes AWS_ENDPOINT_URL in the function: LocalStack's gateway on this host.
        return "127.0.0.1"

    def get_runtime_endpoint(self) -> str:
        if self._sandbox is not None:
            return f"http://127.0.0.1:{self._sandbox.server.server_address[1]}{API_PREFIX}"
        return f"http://127.0.0.1{API_PREFIX}"

    def _name(self) -> str:
        return self.function_version.id.function_name

    # -- version lifecycle
    @classmethod
    def prepare_version(cls, function_version: FunctionVersion) -> None:
        runtime = function_version.config.runtime
        if not is_supported_runtime(runtime) or not function_version.config.code:
            # Raising here puts the function in State=Failed with this StateReason.
            message = _refusal(runtime)
            LOG.error("%s (function %s)", message, function_version.id.function_name)
            raise LambdaRuntimeException(message)
        function_version.config.code.prepare_for_execution()  # unzip once per version

    @classmethod
    def cleanup_version(cls, function_version: FunctionVersion) -> None:
        pass  # LocalStack deletes the unzipped code itself

    @classmethod
    def validate_environment(cls) -> bool:
        LOG.info(
            "Lambda executor orderflow-local: provided.* runtimes run as local processes; "
            "other runtimes are refused (no Docker)."
        )
        return os.name == "posix"


def _payload(error_type: str, message: str) -> bytes:
    return json.dumps({"errorType": error_type, "errorMessage": message}).encode()


def _join(lines: list[str]) -> str:
    return "\n".join(line for line in lines if line) + "\n"


class OrderflowLocalExecutorPlugin(RuntimeExecutorPlugin):
    name = "orderflow-local"

    def load(self, *args, **kwargs):
        return OrderflowLocalExecutor
