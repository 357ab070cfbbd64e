//! `make bench-coldstart`: how long each function takes from process start to its first
//! `GET /2018-06-01/runtime/invocation/next`, beside a Python 3.11 + Powertools peer that
//! does the same kind of init, measured in the same run.
//!
//! Usage: coldstart --template infra/template.yaml --bin-dir target/release \
//!   --python .local/coldstart-venv/bin/python --peer-dir tests/coldstart/peer \
//!   [--bare target/release/bare-runtime] [--runs 20] [--warmup 1] LogicalId=binary...
//!
//! Each run starts the process with a Lambda-like environment (no inherited variables) and
//! `AWS_LAMBDA_RUNTIME_API` pointing at [`runtime_api::RuntimeApi`], notes when the first poll
//! arrives, and kills the process. Rust and Python runs alternate, so that whatever else the
//! machine is doing slows both alike.

mod runtime_api;
mod template;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use runtime_api::RuntimeApi;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("usage: {0}")]
    Usage(String),
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Template {
        path: String,
        source: serde_norway::Error,
    },
    #[error("template: {0}")]
    Shape(String),
    #[error("cannot listen on the loopback interface: {0}")]
    Listen(std::io::Error),
    #[error("the runtime API's listener stopped")]
    ListenerGone,
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("no poll for an invocation before the deadline")]
    NoPoll,
    #[error("the process exited ({0}) before it polled for an invocation")]
    Exited(String),
    #[error("the first request was {0}, not GET of the next invocation")]
    UnexpectedRequest(String),
    #[error("{what}: {source}\n{stderr}")]
    Run {
        what: String,
        source: Box<Error>,
        stderr: String,
    },
}

struct Options {
    template: PathBuf,
    bin_dir: PathBuf,
    python: Option<PathBuf>,
    peer_dir: PathBuf,
    bare: Option<PathBuf>,
    /// Another build of the same binaries (say, before a change), measured in the same rounds.
    baseline_dir: Option<PathBuf>,
    runs: usize,
    warmup: usize,
    timeout: Duration,
    /// LogicalId=binary pairs, as in the Makefile's LAMBDA_FUNCTIONS.
    functions: Vec<(String, String)>,
}

fn parse_args() -> Result<Options, Error> {
    let mut options = Options {
        template: PathBuf::from("infra/template.yaml"),
        bin_dir: PathBuf::from("target/release"),
        python: None,
        peer_dir: PathBuf::from("tests/coldstart/peer"),
        bare: None,
        baseline_dir: None,
        runs: 20,
        warmup: 1,
        timeout: Duration::from_secs(20),
        functions: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .ok_or_else(|| Error::Usage(format!("{name} needs a value")))
        };
        let number = |name: &str, v: String| {
            v.parse::<usize>()
                .map_err(|_| Error::Usage(format!("{name} takes a number, not {v}")))
        };
        match arg.as_str() {
            "--template" => options.template = value("--template")?.into(),
            "--bin-dir" => options.bin_dir = value("--bin-dir")?.into(),
            "--python" => options.python = Some(value("--python")?.into()),
            "--peer-dir" => options.peer_dir = value("--peer-dir")?.into(),
            "--bare" => options.bare = Some(value("--bare")?.into()),
            "--baseline-dir" => options.baseline_dir = Some(value("--baseline-dir")?.into()),
            "--runs" => options.runs = number("--runs", value("--runs")?)?,
            "--warmup" => options.warmup = number("--warmup", value("--warmup")?)?,
            "--timeout-s" => {
                options.timeout =
                    Duration::from_secs(number("--timeout-s", value("--timeout-s")?)? as u64)
            }
            pair if pair.contains('=') && !pair.starts_with('-') => {
                let (id, binary) = pair.split_once('=').unwrap_or_default();
                options.functions.push((id.to_string(), binary.to_string()));
            }
            other => return Err(Error::Usage(format!("unknown argument {other}"))),
        }
    }
    if options.runs == 0 {
        return Err(Error::Usage("--runs must be at least 1".into()));
    }
    Ok(options)
}

/// What Lambda sets for every runtime ("Defined runtime environment variables",
/// https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html#configuration-envvars-runtime),
/// with test credentials; the function's own variables come on top.
fn lambda_env(api: &RuntimeApi, function_name: &str, handler: &str) -> Vec<(String, String)> {
    [
        ("AWS_LAMBDA_RUNTIME_API", api.address()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_DEFAULT_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_SESSION_TOKEN", "test".into()),
        (
            "AWS_LAMBDA_FUNCTION_NAME",
            format!("orderflow-coldstart-{function_name}"),
        ),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128".into()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        (
            "AWS_LAMBDA_LOG_GROUP_NAME",
            format!("/aws/lambda/orderflow-coldstart-{function_name}"),
        ),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "coldstart".into()),
        ("_HANDLER", handler.into()),
        ("LANG", "en_US.UTF-8".into()),
        ("TZ", ":UTC".into()),
        ("PATH", "/usr/local/bin:/usr/bin:/bin".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// One cold start: spawn, wait for the first poll, kill. Returns start -> poll.
fn cold_start(
    api: &RuntimeApi,
    program: &Path,
    args: &[&Path],
    env: &[(String, String)],
    timeout: Duration,
) -> Result<Duration, Error> {
    api.drain();
    let mut command = Command::new(program);
    command
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        // Kept for the error message when init fails; init writes little to it.
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = command.spawn().map_err(|source| Error::Spawn {
        program: program.display().to_string(),
        source,
    })?;
    let polled = api.first_poll(start + timeout, || match child.try_wait() {
        Ok(Some(status)) => Some(status.to_string()),
        _ => None,
    });
    // Killing a process that already exited is an error we have nothing to do about.
    let _ = child.kill();
    let _ = child.wait();
    match polled {
        Ok(at) => Ok(at.saturating_duration_since(start)),
        Err(source) => {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = pipe.read_to_string(&mut stderr);
            }
            Err(Error::Run {
                what: program.display().to_string(),
                source: Box::new(source),
                stderr,
            })
        }
    }
}

fn median(samples: &mut [Duration]) -> f64 {
    samples.sort();
    let n = samples.len();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    if n % 2 == 1 {
        ms(samples[n / 2])
    } else {
        (ms(samples[n / 2 - 1]) + ms(samples[n / 2])) / 2.0
    }
}

fn spread(samples: &[Duration]) -> String {
    // Sorted by median() before this is called.
    let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
    match (samples.first(), samples.last()) {
        (Some(min), Some(max)) => format!("{:.1}-{:.1}", ms(min), ms(max)),
        _ => String::new(),
    }
}

struct Row {
    function: String,
    binary: String,
    rust: Vec<Duration>,
    baseline: Vec<Duration>,
    python: Vec<Duration>,
}

fn run() -> Result<(), Error> {
    let options = parse_args()?;
    let functions = template::functions(&options.template)?;
    let mut selected = Vec::new();
    for (id, binary) in &options.functions {
        let function = functions
            .iter()
            .find(|f| &f.logical_id == id)
            .ok_or_else(|| Error::Shape(format!("no function {id} in the template")))?;
        if &function.binary != binary {
            return Err(Error::Shape(format!(
                "{id}'s binary is {} in the template, {binary} on the command line",
                function.binary
            )));
        }
        selected.push(function.clone());
    }
    if options.functions.is_empty() {
        selected = functions;
    }
    let api = RuntimeApi::start()?;
    let bootstrap = options.peer_dir.join("bootstrap.py");

    let mut rows = Vec::new();
    if let Some(bare) = &options.bare {
        let env = lambda_env(&api, "bare-runtime", "bootstrap");
        let mut rust = Vec::new();
        for i in 0..options.warmup + options.runs {
            let took = cold_start(&api, bare, &[], &env, options.timeout)?;
            if i >= options.warmup {
                rust.push(took);
            }
        }
        rows.push(Row {
            function: "(bare lambda_runtime)".into(),
            binary: "bare-runtime".into(),
            rust,
            baseline: Vec::new(),
            python: Vec::new(),
        });
    }
    for function in &selected {
        let program = options.bin_dir.join(&function.binary);
        let mut rust_env = lambda_env(&api, &function.binary, "bootstrap");
        rust_env.extend(function.env.iter().cloned());
        let mut python_env = lambda_env(&api, &function.binary, "handler.handler");
        python_env.extend(function.env.iter().cloned());
        let (mut rust, mut baseline, mut python) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..options.warmup + options.runs {
            let took = cold_start(&api, &program, &[], &rust_env, options.timeout)?;
            if i >= options.warmup {
                rust.push(took);
            }
            // A baseline directory need not have every binary: those it lacks are skipped.
            if let Some(program) = options
                .baseline_dir
                .as_ref()
                .map(|dir| dir.join(&function.binary))
                .filter(|program| program.exists())
            {
                let took = cold_start(&api, &program, &[], &rust_env, options.timeout)?;
                if i >= options.warmup {
                    baseline.push(took);
                }
            }
            if let Some(interpreter) = &options.python {
                let took = cold_start(
                    &api,
                    interpreter,
                    &[&bootstrap],
                    &python_env,
                    options.timeout,
                )?;
                if i >= options.warmup {
                    python.push(took);
                }
            }
        }
        eprintln!("  measured {}", function.binary);
        rows.push(Row {
            function: function.logical_id.clone(),
            binary: function.binary.clone(),
            rust,
            baseline,
            python,
        });
    }

    println!(
        "cold start, process start -> first GET /next: median of {} runs after {} warm-up (min-max)",
        options.runs, options.warmup
    );
    if let Some(dir) = &options.baseline_dir {
        println!("baseline: the same binaries from {}", dir.display());
    }
    println!(
        "{:<22} {:<13} {:>9} {:>13} {:>10} {:>15} {:>8}{}",
        "function",
        "binary",
        "Rust ms",
        "(min-max)",
        "Python ms",
        "(min-max)",
        "ratio",
        if options.baseline_dir.is_some() {
            "  baseline ms (min-max)  ratio"
        } else {
            ""
        }
    );
    for row in &mut rows {
        let rust = median(&mut row.rust);
        let baseline = if row.baseline.is_empty() {
            String::new()
        } else {
            let before = median(&mut row.baseline);
            let ratio = if row.python.is_empty() {
                "-".to_string()
            } else {
                // python's median is recomputed below; sorting twice is harmless.
                format!("{:.0}x", median(&mut row.python) / before)
            };
            format!("  {before:>11.2} {:>13} {ratio:>6}", spread(&row.baseline))
        };
        let (python, ratio) = if row.python.is_empty() {
            ("-".to_string(), "-".to_string())
        } else {
            let python = median(&mut row.python);
            (format!("{python:.1}"), format!("{:.0}x", python / rust))
        };
        println!(
            "{:<22} {:<13} {:>9.2} {:>13} {:>10} {:>15} {:>8}{baseline}",
            row.function,
            row.binary,
            rust,
            spread(&row.rust),
            python,
            spread(&row.python),
            ratio
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("coldstart: {e}");
            ExitCode::FAILURE
        }
    }
}
