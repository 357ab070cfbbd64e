//! Public on-demand prices, US East (N. Virginia), in US dollars. Each constant cites AWS's
//! pricing page. Checked on 2026-11-21: AWS's Lambda page (terms: per request, per GB-s,
//! rounded up to 1 ms) was readable from here, its price table and the other AWS pages were
//! not; the numbers were checked against pages quoting them for us-east-1 that day (for
//! DynamoDB after the November 2024 on-demand price cut). Recheck against AWS's pages when
//! a number matters. Free tiers are left out: a cost per million orders is meant for volumes
//! far past them. Update a constant and this date together.

/// AWS Lambda pricing, https://aws.amazon.com/lambda/pricing/: $0.20 per 1M requests.
pub const LAMBDA_PER_REQUEST: f64 = 0.20 / 1e6;
/// Same page, Arm price, first 7.5 billion GB-s a month: $0.0000133334 per GB-s. Arm because
/// the template's `Architectures` line (Globals) is arm64, which the Makefile's `LAMBDA_ARCH` reads.
pub const LAMBDA_PER_GB_SECOND_ARM64: f64 = 0.000_013_333_4;
/// Same page, x86 price, first 6 billion GB-s a month: $0.0000166667 per GB-s (for comparison).
pub const LAMBDA_PER_GB_SECOND_X86: f64 = 0.000_016_666_7;

/// Amazon DynamoDB on-demand pricing, https://aws.amazon.com/dynamodb/pricing/on-demand/,
/// Standard table class: $0.625 per million write request units.
pub const DYNAMODB_PER_WRU: f64 = 0.625 / 1e6;
/// Same page: $0.125 per million read request units.
pub const DYNAMODB_PER_RRU: f64 = 0.125 / 1e6;

/// Amazon EventBridge pricing, https://aws.amazon.com/eventbridge/pricing/: custom events
/// published to an event bus, $1.00 per million; each 64 KB chunk of an entry is one event.
pub const EVENTBRIDGE_PER_EVENT: f64 = 1.00 / 1e6;

/// Amazon SQS pricing, https://aws.amazon.com/sqs/pricing/: standard queue, first 100 billion
/// requests a month, $0.40 per million; each 64 KB chunk of a request's payload is one request.
pub const SQS_PER_REQUEST: f64 = 0.40 / 1e6;

/// Amazon SES pricing, https://aws.amazon.com/ses/pricing/: outbound email, $0.10 per 1,000
/// messages; each recipient counts as one message.
pub const SES_PER_EMAIL: f64 = 0.10 / 1e3;

/// Billing granularity of the units above, from the same pages.
pub const DYNAMODB_WRITE_UNIT_BYTES: u64 = 1024;
pub const DYNAMODB_READ_UNIT_BYTES: u64 = 4 * 1024;
pub const CHUNK_BYTES: u64 = 64 * 1024;
