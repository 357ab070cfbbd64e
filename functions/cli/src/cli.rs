//! The command line's grammar: every command, flag and argument with its help text, and the
//! combinations refused before anything is sent. clap reports a usage error (unknown flag,
//! bad value, conflicting or missing flags) with its own message and exit status 2; checks
//! between values that clap cannot state on one argument are in [`Cli::validate`], which
//! reports the same way.

use chrono::{DateTime, Utc};
use clap::builder::RangedU64ValueParser;
use clap::error::ErrorKind;
use clap::{ArgGroup, CommandFactory, Parser, Subcommand};
use eventkit::envelope::format_time;

/// Shown after `--help` of the top command: the exit statuses scripts can rely on, and where
/// the requests go.
pub const AFTER_HELP: &str = "\
Target: the AWS SDK's default chain. With AWS_ENDPOINT_URL set (source infra/scripts/env.sh)
every request goes to LocalStack; otherwise to AWS, as AWS_PROFILE / AWS_ACCESS_KEY_ID /...
and AWS_REGION (or --region) say. Resource names are orderflow-<stage>-<suffix>.

Output: text for a terminal; --json prints one JSON document on stdout instead. Progress
bars and spinners go to stderr.

Exit status:
  0  success
  1  runtime failure (an AWS call failed, nothing found, an unreadable file, orders that did
     not finish, ...): one `error: <message>` line on stderr, then its causes, one per line
  2  usage error (unknown or conflicting flags, a missing or invalid value): clap's message";

/// The flags of `send` that only make sense when making orders up (`--count`).
const GENERATOR_FLAGS: [&str; 4] = ["rate", "duplicates", "decline_share", "schema_version"];

/// Operate an Orderflow stage (on AWS, or on LocalStack when AWS_ENDPOINT_URL is set).
#[derive(Debug, Parser)]
#[command(name = "orderflow", version, after_help = AFTER_HELP)]
pub struct Cli {
    /// Stage: resource names are orderflow-<stage>-<suffix>.
    #[arg(long, global = true, env = "STAGE", default_value = "dev")]
    pub stage: String,
    /// AWS region (default: the SDK's configuration, e.g. AWS_REGION or the profile's).
    #[arg(long, global = true)]
    pub region: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Send OrderPlaced events: a put-events sample file, or --count made-up orders.
    #[command(group(ArgGroup::new("input").required(true).args(["sample", "count"])))]
    Send {
        /// A put-events entries file (events/samples/*.json), sent as written to this stage's
        /// bus (whatever bus the file names).
        #[arg(value_name = "FILE", conflicts_with_all = GENERATOR_FLAGS)]
        sample: Option<String>,
        /// Make up this many orders (ids unique to the run) instead of reading a file.
        #[arg(
            long,
            value_name = "N",
            value_parser = RangedU64ValueParser::<usize>::new().range(1..)
        )]
        count: Option<usize>,
        /// Orders per second (default: as fast as PutEvents takes them, 10 per request).
        #[arg(long, value_name = "PER_SECOND", value_parser = positive)]
        rate: Option<f64>,
        /// Send the first K orders a second time, with the same event id (at most --count).
        #[arg(long, value_name = "K", default_value_t = 0)]
        duplicates: usize,
        /// Share (0 to 1) of the orders whose card is declined, spread evenly over the run.
        #[arg(long, value_name = "SHARE", default_value_t = 0.0, value_parser = share)]
        decline_share: f64,
        /// OrderPlaced schema version of the made-up orders: 2 (with shippingAddress) or 1
        /// (without, upcast by every consumer).
        #[arg(
            long,
            value_name = "N",
            default_value_t = 2,
            value_parser = clap::value_parser!(u32).range(1..=2)
        )]
        schema_version: u32,
        /// Print what was sent as JSON.
        #[arg(long)]
        json: bool,
    },
    /// An order's read model and timeline (through the order-query function); `order cancel`
    /// ends an order.
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Order {
        #[command(subcommand)]
        action: Option<OrderAction>,
        /// The order id (e.g. ord-1001).
        #[arg(required = true)]
        id: Option<String>,
        /// Also show the order rebuilt from its events as of this time (RFC 3339).
        #[arg(long, value_name = "TIME")]
        as_of: Option<DateTime<Utc>>,
        /// First wait up to this many seconds for the order to be SHIPPED or CANCELLED; the
        /// order is shown either way, and the exit status is 1 if it did not get there.
        #[arg(long, value_name = "SECONDS")]
        wait: Option<u64>,
        /// Print the answer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The causal tree of everything that happened for an order (or a correlation id).
    Trace {
        /// An order id, or a correlation id (every order it correlates).
        id: String,
        /// Print a mermaid sequenceDiagram instead of the tree.
        #[arg(long, conflicts_with = "json")]
        mermaid: bool,
        /// Print the tree as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Dead-letter queues: list, show, redrive.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Replay stored events of a time range onto the bus, or rebuild the read model.
    #[command(group(
        ArgGroup::new("target")
            .required(true)
            .args(["to_bus", "rebuild_read_model"])
    ))]
    Replay {
        /// Start of the range (RFC 3339, inclusive), by the time events were stored.
        #[arg(long, value_name = "TIME")]
        from: DateTime<Utc>,
        /// End of the range (RFC 3339, exclusive); after --from.
        #[arg(long, value_name = "TIME")]
        to: DateTime<Utc>,
        /// Only events of this detail-type (e.g. OrderPlaced); --to-bus only.
        #[arg(
            long = "type",
            value_name = "DETAIL_TYPE",
            conflicts_with = "rebuild_read_model"
        )]
        event_type: Option<String>,
        /// Publish the events again onto the stage's bus, with their original ids
        /// (consumers recognise them and change nothing).
        #[arg(long)]
        to_bus: bool,
        /// Re-project, in place, the read model of every order with events in the range
        /// (from the order's stream as of --to; views only move forward).
        #[arg(long)]
        rebuild_read_model: bool,
        /// Print what was replayed or rebuilt as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Send N orders, wait until all are terminal, report throughput and latencies.
    Load {
        /// How many orders to make up and send.
        #[arg(
            long,
            value_name = "N",
            default_value_t = 20,
            value_parser = RangedU64ValueParser::<usize>::new().range(1..)
        )]
        orders: usize,
        /// Orders per second (default: as fast as PutEvents takes them, 10 per request).
        #[arg(long, value_name = "PER_SECOND", value_parser = positive)]
        rate: Option<f64>,
        /// Send the first K orders a second time, with the same event id (at most --orders).
        #[arg(long, value_name = "K", default_value_t = 0)]
        duplicates: usize,
        /// Share (0 to 1) of the orders whose card is declined, spread evenly over the run.
        #[arg(long, value_name = "SHARE", default_value_t = 0.0, value_parser = share)]
        decline_share: f64,
        /// Seconds to wait for the orders to finish.
        #[arg(long, value_name = "SECONDS", default_value_t = 300)]
        timeout: u64,
        /// Then a cost report: AWS requests and Lambda time per order, in dollars per million
        /// orders (LocalStack only: reads its usage log).
        #[arg(long)]
        cost: bool,
        /// Seconds to wait, after the orders finished, for every queue to drain and every
        /// function to go idle before counting (with --cost).
        #[arg(long, value_name = "SECONDS", default_value_t = 120, requires = "cost")]
        quiet_timeout: u64,
        /// Print the report as JSON (with --cost: {"load": ..., "cost": ...}).
        #[arg(long)]
        json: bool,
    },
    /// The analytics counters: events per hour and type, revenue per day and currency.
    Stats {
        /// Print the counters as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum OrderAction {
    /// Ask the saga to end an order: an OrderCancelRequested (source orderflow.operations)
    /// on the bus. A pending order is cancelled and compensated at once; a confirmed one is
    /// stopped through shipping first (it stays SHIPPED if it was dispatched already); a
    /// shipped or cancelled one is left as it is.
    Cancel {
        /// The order id (e.g. ord-1001).
        id: String,
        /// Why, as a short code (letters, digits, - _ . : @; e.g. customer-request): the
        /// cancelled order's reason.
        #[arg(long)]
        reason: String,
        /// Then wait up to this many seconds for the order to be SHIPPED or CANCELLED.
        #[arg(long, value_name = "SECONDS")]
        wait: Option<u64>,
        /// Print what was sent (and the order, with --wait) as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Each DLQ's depth and counts by FailureReason.
    List {
        /// Print the queues as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The messages of one DLQ, without taking them off it.
    Show {
        /// The queue: payment, payment-dlq or its full name.
        queue: String,
        /// At most this many messages.
        #[arg(
            long,
            value_name = "N",
            default_value_t = 50,
            value_parser = RangedU64ValueParser::<usize>::new().range(1..)
        )]
        max: usize,
        /// Print the messages as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Move messages back to their source queue (send first, then delete).
    Redrive {
        /// The queue: payment, payment-dlq or its full name.
        queue: String,
        /// Only messages with this FailureReason (e.g. max-receive-count).
        #[arg(long)]
        reason: Option<String>,
        /// Show what would move, move nothing.
        #[arg(long)]
        dry_run: bool,
        /// Also permanent failures (after fixing their cause).
        #[arg(long)]
        include_permanent: bool,
        /// Print what moved and what stayed as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// A rate: a finite number above 0 (0 or less would otherwise mean "no rate" unnoticed).
fn positive(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        Ok(_) => Err("must be a number above 0".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// A share: a number from 0 to 1 (anything else would otherwise be clamped unnoticed).
fn share(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        Ok(_) => Err("must be from 0 to 1".into()),
        Err(e) => Err(e.to_string()),
    }
}

impl Cli {
    /// The process's arguments, parsed and validated; on a usage error clap prints it and
    /// exits 2 (on `--help` and `--version` it prints them and exits 0).
    pub fn parse_valid() -> Self {
        let cli = Cli::parse();
        if let Err(e) = cli.validate() {
            e.exit();
        }
        cli
    }

    /// The checks between values of one command, reported as clap reports usage errors.
    pub fn validate(&self) -> Result<(), clap::Error> {
        match &self.command {
            Command::Send {
                count: Some(count),
                duplicates,
                ..
            } if duplicates > count => Err(usage_error(
                "send",
                format!("--duplicates ({duplicates}) must not exceed --count ({count})"),
            )),
            Command::Load {
                orders, duplicates, ..
            } if duplicates > orders => Err(usage_error(
                "load",
                format!("--duplicates ({duplicates}) must not exceed --orders ({orders})"),
            )),
            Command::Replay { from, to, .. } if from >= to => Err(usage_error(
                "replay",
                format!(
                    "--from ({}) must be before --to ({})",
                    format_time(from),
                    format_time(to)
                ),
            )),
            _ => Ok(()),
        }
    }
}

/// A usage error of `subcommand`, with its usage line, as clap formats its own.
fn usage_error(subcommand: &str, message: String) -> clap::Error {
    let mut command = Cli::command();
    // Building gives the subcommands their full names ("orderflow send") for the usage line.
    command.build();
    match command.find_subcommand_mut(subcommand) {
        Some(sub) => sub.error(ErrorKind::ValueValidation, message),
        None => command.error(ErrorKind::ValueValidation, message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Command as ClapCommand;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("orderflow").chain(args.iter().copied()))
    }

    fn kind(args: &[&str]) -> ErrorKind {
        match parse(args) {
            Ok(cli) => panic!("{args:?} parsed: {cli:?}"),
            Err(e) => e.kind(),
        }
    }

    #[test]
    fn the_command_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_command_flag_and_argument_has_help() {
        fn walk(command: &ClapCommand, path: &str, missing: &mut Vec<String>) {
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                // clap's own --help and --version carry their own text.
                if id == "help" || id == "version" {
                    continue;
                }
                if arg.get_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in command.get_subcommands() {
                let path = format!("{path} {}", sub.get_name());
                if sub.get_about().is_none() && sub.get_name() != "help" {
                    missing.push(path.clone());
                }
                walk(sub, &path, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "orderflow", &mut missing);
        assert!(missing.is_empty(), "without help text: {missing:?}");
    }

    #[test]
    fn version_is_the_crate_version_and_schema_version_is_sends() {
        let e = parse(&["--version"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::DisplayVersion);
        assert!(e.to_string().contains(env!("CARGO_PKG_VERSION")), "{e}");
        match parse(&["send", "--count", "1", "--schema-version", "1"])
            .unwrap()
            .command
        {
            Command::Send { schema_version, .. } => assert_eq!(schema_version, 1),
            other => panic!("{other:?}"),
        }
        match parse(&["send", "--count", "1"]).unwrap().command {
            Command::Send { schema_version, .. } => assert_eq!(schema_version, 2),
            other => panic!("{other:?}"),
        }
        // The old spelling is gone: not taken for the schema version.
        assert_eq!(
            kind(&["send", "--count", "1", "--version", "1"]),
            ErrorKind::UnknownArgument
        );
        assert_eq!(
            kind(&["send", "--count", "1", "--schema-version", "3"]),
            ErrorKind::ValueValidation
        );
    }

    #[test]
    fn send_takes_exactly_one_of_a_file_and_count() {
        assert!(parse(&["send", "events/samples/order-placed.json"]).is_ok());
        assert!(parse(&["send", "events/samples/order-placed.json", "--json"]).is_ok());
        assert_eq!(kind(&["send"]), ErrorKind::MissingRequiredArgument);
        assert_eq!(
            kind(&["send", "f.json", "--count", "2"]),
            ErrorKind::ArgumentConflict
        );
    }

    #[test]
    fn send_refuses_generator_flags_with_a_file() {
        for flags in [
            &["--rate", "2"][..],
            &["--duplicates", "1"],
            &["--decline-share", "0.5"],
            &["--schema-version", "1"],
        ] {
            let mut args = vec!["send", "f.json"];
            args.extend_from_slice(flags);
            assert_eq!(kind(&args), ErrorKind::ArgumentConflict, "{args:?}");
        }
        // The same flags with --count are fine.
        assert!(parse(&[
            "send",
            "--count",
            "4",
            "--rate",
            "2",
            "--duplicates",
            "1",
            "--decline-share",
            "0.5",
            "--schema-version",
            "1"
        ])
        .is_ok());
    }

    #[test]
    fn values_that_would_be_ignored_or_clamped_are_refused() {
        for args in [
            &["send", "--count", "1", "--rate", "0"][..],
            &["send", "--count", "1", "--rate=-1"],
            &["send", "--count", "1", "--decline-share", "1.5"],
            &["send", "--count", "0"],
            &["load", "--orders", "0"],
            &["load", "--rate", "0"],
            &["load", "--decline-share=-0.1"],
            &["dlq", "show", "payment", "--max", "0"],
        ] {
            assert_eq!(kind(args), ErrorKind::ValueValidation, "{args:?}");
        }
    }

    #[test]
    fn trace_refuses_mermaid_with_json() {
        assert_eq!(
            kind(&["trace", "ord-1", "--mermaid", "--json"]),
            ErrorKind::ArgumentConflict
        );
        assert!(parse(&["trace", "ord-1", "--mermaid"]).is_ok());
        assert!(parse(&["trace", "ord-1", "--json"]).is_ok());
    }

    #[test]
    fn replay_needs_exactly_one_target_and_type_only_onto_the_bus() {
        let range = [
            "replay",
            "--from",
            "2026-01-01T00:00:00Z",
            "--to",
            "2026-01-02T00:00:00Z",
        ];
        let with = |extra: &[&'static str]| {
            let mut args = range.to_vec();
            args.extend_from_slice(extra);
            args
        };
        assert!(parse(&with(&["--to-bus"])).is_ok());
        assert!(parse(&with(&["--to-bus", "--type", "OrderPlaced", "--json"])).is_ok());
        assert!(parse(&with(&["--rebuild-read-model"])).is_ok());
        assert_eq!(
            kind(&with(&["--to-bus", "--rebuild-read-model"])),
            ErrorKind::ArgumentConflict
        );
        assert_eq!(kind(&with(&[])), ErrorKind::MissingRequiredArgument);
        assert_eq!(
            kind(&with(&["--rebuild-read-model", "--type", "OrderPlaced"])),
            ErrorKind::ArgumentConflict
        );
    }

    #[test]
    fn load_quiet_timeout_needs_cost() {
        assert_eq!(
            kind(&["load", "--quiet-timeout", "30"]),
            ErrorKind::MissingRequiredArgument
        );
        assert!(parse(&["load", "--cost", "--quiet-timeout", "30", "--json"]).is_ok());
    }

    #[test]
    fn every_command_that_prints_data_takes_json() {
        for args in [
            &["send", "f.json", "--json"][..],
            &["send", "--count", "1", "--json"],
            &["order", "ord-1", "--json"],
            &["trace", "ord-1", "--json"],
            &["dlq", "list", "--json"],
            &["dlq", "show", "payment", "--json"],
            &["dlq", "redrive", "payment", "--dry-run", "--json"],
            &[
                "replay",
                "--from",
                "2026-01-01T00:00:00Z",
                "--to",
                "2026-01-02T00:00:00Z",
                "--rebuild-read-model",
                "--json",
            ],
            &["load", "--json"],
            &["stats", "--json"],
        ] {
            parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        }
    }

    #[test]
    fn values_are_checked_against_each_other() {
        let check = |args: &[&str]| parse(args).unwrap().validate();
        assert!(check(&["send", "--count", "2", "--duplicates", "2"]).is_ok());
        let e = check(&["send", "--count", "2", "--duplicates", "3"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ValueValidation);
        assert!(e.to_string().contains("Usage: orderflow send"), "{e}");
        assert!(check(&["load", "--orders", "2", "--duplicates", "3"]).is_err());
        let e = check(&[
            "replay",
            "--from",
            "2026-01-02T00:00:00Z",
            "--to",
            "2026-01-01T00:00:00Z",
            "--to-bus",
        ])
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ValueValidation);
        assert!(e.to_string().contains("must be before --to"), "{e}");
        assert!(check(&["stats"]).is_ok());
    }

    #[test]
    fn the_help_documents_the_exit_statuses() {
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("Exit status:"), "{help}");
        assert!(help.contains("2  usage error"), "{help}");
    }
}
