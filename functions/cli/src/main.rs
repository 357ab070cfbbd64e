use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Duration;

use indicatif::ProgressBar;
use orderflow_cli::cli::{Cli, Command, DlqCommand, OrderAction};
use orderflow_cli::error::report_lines;
use orderflow_cli::{cost, dlq, load, order, replay, send, stats, trace};
use orderflow_cli::{CliError, Context, Result};
use serde::Serialize;

fn run_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_string()
}

/// Writes to stdout; an error is the command's (a closed pipe is told apart by the caller).
fn emit(text: &str) -> Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(CliError::Output)
}

/// `--json`: one pretty-printed document, then a newline.
fn emit_json<T: Serialize + ?Sized>(value: &T) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value).map_err(CliError::Json)?;
    text.push('\n');
    emit(&text)
}

/// Usage errors never get here: clap reports them and exits 2 while parsing. What fails
/// from here on is a runtime failure: one `error:` line (and its causes) on stderr, exit 1,
/// never a panic or a `Debug` dump with a backtrace.
#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse_valid();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`orderflow trace x | head`): it has what it wanted.
        Err(CliError::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            let mut err = io::stderr().lock();
            for line in report_lines(&e) {
                // Nowhere left to report a failure to write to stderr.
                let _ = writeln!(err, "{line}");
            }
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    let ctx = Context::connect(&cli.stage, cli.region.clone()).await;
    match cli.command {
        Command::Send {
            sample: Some(path),
            json,
            ..
        } => {
            let sent = send::send_sample(&ctx, &path).await?;
            if json {
                emit_json(&sent)
            } else {
                emit(&send::render_sample_sent(&sent))
            }
        }
        Command::Send {
            sample: None,
            count,
            rate,
            duplicates,
            decline_share,
            schema_version,
            json,
        } => {
            // clap requires a FILE or --count: this is only reached with a count.
            let count = count.ok_or_else(|| CliError::Usage("give a FILE or --count N".into()))?;
            let plan = send::OrderPlan {
                count,
                decline_share,
                duplicates,
                schema_version,
                run_id: run_id(),
            };
            let sent = send::send_orders(&ctx, &plan, rate, json).await?;
            let sent: Vec<_> = sent.into_iter().map(|(s, _)| s).collect();
            if json {
                emit_json(&sent)
            } else {
                emit(&format!(
                    "{}sent {} event(s) to {}\n",
                    send::render_sent(&sent),
                    sent.len(),
                    ctx.bus()
                ))
            }
        }
        Command::Order {
            action:
                Some(OrderAction::Cancel {
                    id,
                    reason,
                    wait,
                    json,
                }),
            ..
        } => {
            let request = order::cancel_request(&id, &reason)?;
            order::send_cancel(&ctx, &request).await?;
            let sent = serde_json::json!({
                "orderId": id,
                "reason": reason,
                "eventId": request.metadata.event_id,
            });
            if json {
                emit_json(&sent)?;
            } else {
                emit(&format!(
                    "asked to cancel {id} ({reason}): OrderCancelRequested {}\n",
                    request.metadata.event_id
                ))?;
            }
            let Some(seconds) = wait else {
                return Ok(());
            };
            let finished =
                order::wait_terminal(&ctx, &id, Duration::from_secs(seconds), json).await?;
            let answer = order::query(&ctx, &id, None).await?;
            if json {
                emit_json(&order::OrderAnswer::of(&answer))?;
            } else {
                emit(&order::render_answer(&id, &answer))?;
            }
            if finished {
                Ok(())
            } else {
                Err(CliError::Timeout {
                    what: format!("{id} to be SHIPPED or CANCELLED"),
                    seconds,
                })
            }
        }
        // clap requires the id when there is no action.
        Command::Order {
            action: None,
            id: None,
            ..
        } => Err(CliError::Usage("order: an order id is needed".into())),
        Command::Order {
            action: None,
            id: Some(id),
            as_of,
            wait,
            json,
        } => {
            let finished = match wait {
                Some(secs) => {
                    order::wait_terminal(&ctx, &id, Duration::from_secs(secs), json).await?
                }
                None => true,
            };
            let answer = order::query(&ctx, &id, as_of.as_ref()).await?;
            if !order::is_known(&answer) {
                return Err(CliError::NotFound(format!("no order {id}")));
            }
            if json {
                emit_json(&order::OrderAnswer::of(&answer))?;
            } else {
                emit(&order::render_answer(&id, &answer))?;
            }
            // Shown either way, so that one sees where it is stuck.
            match (finished, wait) {
                (false, Some(seconds)) => Err(CliError::Timeout {
                    what: format!("{id} to be SHIPPED or CANCELLED"),
                    seconds,
                }),
                _ => Ok(()),
            }
        }
        Command::Trace { id, mermaid, json } => {
            let events = trace::collect(&ctx, &id).await?;
            if events.is_empty() {
                return Err(CliError::NotFound(format!(
                    "nothing found for {id} (an order id or a correlation id)"
                )));
            }
            let roots = trace::build_tree(&events);
            if json {
                emit_json(&roots)
            } else if mermaid {
                emit(&trace::render_mermaid(&roots))
            } else {
                emit(&trace::render_tree(&roots))
            }
        }
        Command::Dlq {
            command: DlqCommand::List { json },
        } => {
            let rows = dlq::summaries(&ctx).await?;
            if json {
                emit_json(&rows)
            } else {
                emit(&dlq::render_list(&rows))
            }
        }
        Command::Dlq {
            command: DlqCommand::Show { queue, max, json },
        } => {
            let name = dlq::dlq_name(&ctx.stage, &queue);
            let url = dlq::queue_url(&ctx, &name).await?;
            let messages = dlq::peek(&ctx, &url, max).await?;
            if json {
                emit_json(&messages)
            } else {
                emit(&dlq::render_messages(&name, &messages))
            }
        }
        Command::Dlq {
            command:
                DlqCommand::Redrive {
                    queue,
                    reason,
                    dry_run,
                    include_permanent,
                    json,
                },
        } => {
            let name = dlq::dlq_name(&ctx.stage, &queue);
            let moved =
                dlq::redrive(&ctx, &name, reason.as_deref(), include_permanent, dry_run).await?;
            if json {
                emit_json(&dlq::RedriveReport::new(&name, moved, dry_run))
            } else {
                emit(&dlq::render_redrive(&name, &moved, dry_run))
            }
        }
        Command::Replay {
            from,
            to,
            event_type,
            to_bus,
            rebuild_read_model: _,
            json,
        } => {
            // clap requires exactly one of --to-bus and --rebuild-read-model.
            if to_bus {
                let (events, refused) =
                    replay::to_bus(&ctx, from, to, event_type.as_deref(), json).await?;
                let report = replay::BusReplay::new(ctx.bus(), &events, &refused);
                if json {
                    emit_json(&report)
                } else {
                    emit(&replay::render_bus(&report))
                }
            } else {
                let answers = replay::rebuild(&ctx, from, to, json).await?;
                if json {
                    emit_json(&replay::summarize_rebuild(
                        &ctx.name("projector"),
                        &answers,
                    )?)
                } else {
                    // The projector's own answers, one JSON line per invocation.
                    emit(&answers.iter().map(|a| format!("{a}\n")).collect::<String>())
                }
            }
        }
        Command::Load {
            orders,
            rate,
            duplicates,
            decline_share,
            timeout,
            cost,
            quiet_timeout,
            json,
        } => {
            let plan = send::OrderPlan {
                count: orders,
                decline_share,
                duplicates,
                schema_version: 2,
                run_id: run_id(),
            };
            // Fail before sending anything if the report could not be made.
            let endpoint = if cost { Some(cost::endpoint()?) } else { None };
            let since = cost::now_epoch();
            let report = load::run(&ctx, &plan, rate, Duration::from_secs(timeout), json).await?;
            let costs = match &endpoint {
                Some(endpoint) => {
                    let spinner = if json {
                        ProgressBar::hidden()
                    } else {
                        ProgressBar::new_spinner()
                    };
                    spinner.set_message(
                        "waiting for the queues to drain and the functions to go idle",
                    );
                    spinner.enable_steady_tick(Duration::from_millis(200));
                    let quiet =
                        cost::wait_quiet(&ctx, endpoint, Duration::from_secs(quiet_timeout))
                            .await?;
                    let until = cost::now_epoch();
                    let usage = cost::fetch_usage(endpoint, since).await?;
                    spinner.finish_and_clear();
                    Some(cost::summarize(
                        &usage,
                        report.orders,
                        &ctx.stage,
                        since,
                        until,
                        quiet,
                    ))
                }
                None => None,
            };
            match (json, &costs) {
                (true, Some(costs)) => emit_json(&load::LoadWithCost {
                    load: &report,
                    cost: costs,
                })?,
                (true, None) => emit_json(&report)?,
                (false, costs) => {
                    let mut text = load::render(&report);
                    if let Some(costs) = costs {
                        text.push_str(&cost::render(costs));
                    }
                    emit(&text)?;
                }
            }
            if report.unfinished.is_empty() {
                Ok(())
            } else {
                Err(CliError::Unfinished {
                    unfinished: report.unfinished.len(),
                    orders: report.orders,
                })
            }
        }
        Command::Stats { json } => {
            let stats = stats::load(&ctx).await?;
            if json {
                emit_json(&stats)
            } else {
                emit(&stats::render(&stats))
            }
        }
    }
}
