use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use indicatif::ProgressBar;
use orderflow_cli::{cost, dlq, load, order, replay, send, stats, trace, Context};

/// Operate an Orderflow stage (on AWS, or on LocalStack when AWS_ENDPOINT_URL is set).
#[derive(Parser)]
#[command(name = "orderflow", version)]
struct Cli {
    /// Stage: resource names are orderflow-<stage>-<suffix>.
    #[arg(long, global = true, env = "STAGE", default_value = "dev")]
    stage: String,
    /// AWS region (default: the SDK's configuration, e.g. AWS_REGION).
    #[arg(long, global = true)]
    region: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Send OrderPlaced events: a put-events sample file, or --count made-up orders.
    Send {
        /// A put-events entries file (events/samples/*.json); sent to this stage's bus.
        sample: Option<String>,
        #[arg(long, conflicts_with = "sample")]
        count: Option<usize>,
        /// Orders per second (default: as fast as PutEvents takes them).
        #[arg(long)]
        rate: Option<f64>,
        /// Send the first K orders twice, with the same event id.
        #[arg(long, default_value_t = 0)]
        duplicates: usize,
        /// Share (0-1) of orders whose card is declined.
        #[arg(long, default_value_t = 0.0)]
        decline_share: f64,
        /// OrderPlaced schema version: 2 (with shippingAddress) or 1.
        #[arg(long, default_value_t = 2)]
        version: u32,
        #[arg(long)]
        json: bool,
    },
    /// An order's read model and timeline (through the order-query function).
    Order {
        id: String,
        /// Also the order rebuilt from its events as of this time (RFC 3339).
        #[arg(long)]
        as_of: Option<DateTime<Utc>>,
        /// First wait up to this many seconds for the order to be SHIPPED or CANCELLED.
        #[arg(long)]
        wait: Option<u64>,
    },
    /// The causal tree of everything that happened for an order (or a correlation id).
    Trace {
        id: String,
        /// Print a mermaid sequenceDiagram instead.
        #[arg(long)]
        mermaid: bool,
        #[arg(long)]
        json: bool,
    },
    /// Dead-letter queues: list, show, redrive.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Replay stored events of a time range onto the bus, or rebuild the read model.
    Replay {
        #[arg(long)]
        from: DateTime<Utc>,
        #[arg(long)]
        to: DateTime<Utc>,
        /// Only events of this type.
        #[arg(long = "type")]
        event_type: Option<String>,
        #[arg(
            long,
            required_unless_present = "rebuild_read_model",
            conflicts_with = "rebuild_read_model"
        )]
        to_bus: bool,
        #[arg(long)]
        rebuild_read_model: bool,
    },
    /// Send N orders, wait until all are terminal, report throughput and latencies.
    Load {
        #[arg(long, default_value_t = 20)]
        orders: usize,
        #[arg(long)]
        rate: Option<f64>,
        #[arg(long, default_value_t = 0)]
        duplicates: usize,
        #[arg(long, default_value_t = 0.0)]
        decline_share: f64,
        /// Seconds to wait for the orders to finish.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
        /// Then a cost report: AWS requests and Lambda time per order, in dollars per million
        /// orders (LocalStack only: reads its usage log).
        #[arg(long)]
        cost: bool,
        /// Seconds to wait, after the orders finished, for every queue to drain and every
        /// function to go idle before counting.
        #[arg(long, default_value_t = 120, requires = "cost")]
        quiet_timeout: u64,
        #[arg(long)]
        json: bool,
    },
    /// The analytics counters.
    Stats {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum DlqCommand {
    /// Each DLQ's depth and counts by FailureReason.
    List,
    /// The messages of one DLQ (payment, payment-dlq or its full name).
    Show {
        queue: String,
        #[arg(long, default_value_t = 50)]
        max: usize,
        #[arg(long)]
        json: bool,
    },
    /// Move messages back to their source queue (send first, then delete).
    Redrive {
        queue: String,
        /// Only messages with this FailureReason.
        #[arg(long)]
        reason: Option<String>,
        #[arg(long)]
        dry_run: bool,
        /// Also permanent failures (after fixing their cause).
        #[arg(long)]
        include_permanent: bool,
    },
}

fn run_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_string()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let ctx = Context::connect(&cli.stage, cli.region.clone()).await;
    match cli.command {
        Command::Send {
            sample: Some(path), ..
        } => {
            for (detail_type, order, event) in send::send_sample(&ctx, &path).await? {
                println!("{detail_type:<14} order {order:<12} event {event}");
            }
        }
        Command::Send {
            sample: None,
            count,
            rate,
            duplicates,
            decline_share,
            version,
            json,
        } => {
            let count = count.context("give a sample file or --count N")?;
            let plan = send::OrderPlan {
                count,
                decline_share,
                duplicates,
                version,
                run_id: run_id(),
            };
            let sent = send::send_orders(&ctx, &plan, rate, json).await?;
            let sent: Vec<_> = sent.into_iter().map(|(s, _)| s).collect();
            if json {
                println!("{}", serde_json::to_string_pretty(&sent)?);
            } else {
                print!("{}", send::render_sent(&sent));
                println!("sent {} event(s) to {}", sent.len(), ctx.bus());
            }
        }
        Command::Order { id, as_of, wait } => {
            let finished = match wait {
                Some(secs) => order::wait_terminal(&ctx, &id, Duration::from_secs(secs)).await?,
                None => true,
            };
            let answer = order::query(&ctx, &id, as_of.as_ref()).await?;
            print!("{}", order::render_answer(&id, &answer));
            anyhow::ensure!(
                finished,
                "{id} is not SHIPPED or CANCELLED after {} s",
                wait.unwrap_or(0)
            );
        }
        Command::Trace { id, mermaid, json } => {
            let events = trace::collect(&ctx, &id).await?;
            anyhow::ensure!(
                !events.is_empty(),
                "nothing found for {id} (an order id or a correlation id)"
            );
            let roots = trace::build_tree(&events);
            if json {
                println!("{}", serde_json::to_string_pretty(&roots)?);
            } else if mermaid {
                print!("{}", trace::render_mermaid(&roots));
            } else {
                print!("{}", trace::render_tree(&roots));
            }
        }
        Command::Dlq {
            command: DlqCommand::List,
        } => {
            let mut rows = Vec::new();
            for (name, url) in dlq::list_dlqs(&ctx).await? {
                let depth = dlq::depth(&ctx, &url).await?;
                let messages = if depth > 0 {
                    dlq::peek(&ctx, &url, 500).await?
                } else {
                    vec![]
                };
                rows.push((name, depth, dlq::counts_by_reason(&messages)));
            }
            print!("{}", dlq::render_list(&rows));
        }
        Command::Dlq {
            command: DlqCommand::Show { queue, max, json },
        } => {
            let name = dlq::dlq_name(&ctx.stage, &queue);
            let url = dlq::queue_url(&ctx, &name).await?;
            let messages = dlq::peek(&ctx, &url, max).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&messages)?);
            } else {
                print!("{}", dlq::render_messages(&name, &messages));
            }
        }
        Command::Dlq {
            command:
                DlqCommand::Redrive {
                    queue,
                    reason,
                    dry_run,
                    include_permanent,
                },
        } => {
            let name = dlq::dlq_name(&ctx.stage, &queue);
            let moved =
                dlq::redrive(&ctx, &name, reason.as_deref(), include_permanent, dry_run).await?;
            print!("{}", dlq::render_redrive(&name, &moved, dry_run));
        }
        Command::Replay {
            from,
            to,
            event_type,
            to_bus,
            rebuild_read_model,
        } => {
            if to_bus {
                let (events, refused) =
                    replay::to_bus(&ctx, from, to, event_type.as_deref()).await?;
                println!(
                    "replayed {} event(s) onto {} with their original ids",
                    events.len(),
                    ctx.bus()
                );
                for (t, n) in replay::counts(&events) {
                    println!("  {t:<28} {n}");
                }
                for (e, why) in &refused {
                    println!(
                        "not replayed {} {}: {why}",
                        e.detail_type, e.metadata.event_id
                    );
                }
            } else if rebuild_read_model {
                anyhow::ensure!(event_type.is_none(), "--type applies to --to-bus only");
                for answer in replay::rebuild(&ctx, from, to).await? {
                    println!("{answer}");
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
                version: 2,
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
                (true, Some(costs)) => println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({"load": report, "cost": costs})
                    )?
                ),
                (true, None) => println!("{}", serde_json::to_string_pretty(&report)?),
                (false, _) => {
                    print!("{}", load::render(&report));
                    if let Some(costs) = &costs {
                        print!("{}", cost::render(costs));
                    }
                }
            }
            anyhow::ensure!(
                report.unfinished.is_empty(),
                "{} order(s) did not finish",
                report.unfinished.len()
            );
        }
        Command::Stats { json } => {
            let stats = stats::load(&ctx).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&stats)?);
            } else {
                print!("{}", stats::render(&stats));
            }
        }
    }
    Ok(())
}
