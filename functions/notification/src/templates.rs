//! What each email says. Pure functions of the event's data: the same event always renders
//! the same email, so a record of what was sent can be compared with what would be sent.
//!
//! Each template is written once as blocks (paragraphs and lists) and rendered twice, as
//! plain text and as HTML, so the two bodies cannot drift and every value that reaches the
//! HTML is escaped.

use contracts::money::display_amount;
use contracts::{CustomerRegistered, OrderCancelled, OrderConfirmed, OrderShipped};

/// Which email: also the `template` of `EmailSent` and of the emails record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Template {
    OrderConfirmed,
    OrderCancelled,
    OrderShipped,
    Welcome,
}

impl Template {
    pub fn name(self) -> &'static str {
        match self {
            Template::OrderConfirmed => "order-confirmed",
            Template::OrderCancelled => "order-cancelled",
            Template::OrderShipped => "order-shipped",
            Template::Welcome => "welcome",
        }
    }
}

/// A rendered email, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    pub template: Template,
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
    /// The order the email is about (none for a welcome).
    pub order_id: Option<String>,
}

/// Why an email cannot be sent as rendered. Permanent: the event says so.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidEmail {
    #[error("recipient `{0}` is not an email address")]
    Recipient(String),
}

impl Email {
    /// A cheap sanity check of the recipient, so that an obviously bad address fails
    /// before anything is recorded or sent. SES has the last word on the rest.
    pub fn check(&self) -> Result<(), InvalidEmail> {
        // The rule intake applies to every order and sign-up, so an admitted event's
        // recipient is never refused here.
        if contracts::limits::is_sendable_email(&self.to) {
            Ok(())
        } else {
            Err(InvalidEmail::Recipient(self.to.clone()))
        }
    }
}

const SIGNATURE: &str = "The Orderflow team";

enum Block {
    Para(String),
    List(Vec<String>),
}

fn email(
    template: Template,
    to: &str,
    subject: String,
    order_id: Option<&str>,
    blocks: Vec<Block>,
) -> Email {
    Email {
        template,
        to: to.trim().to_string(),
        subject: one_line(&subject),
        text: text_of(&blocks),
        html: html_of(&blocks),
        order_id: order_id.map(str::to_string),
    }
}

pub fn order_confirmed(order: &OrderConfirmed) -> Email {
    let total = display_amount(order.total, &order.currency);
    let mut blocks = vec![
        Block::Para("Hello,".into()),
        Block::Para(format!(
            "thank you for your order {}. We have received your payment of {total}.",
            order.order_id
        )),
    ];
    if !order.lines.is_empty() {
        blocks.push(Block::Para("Reserved for you:".into()));
        blocks.push(Block::List(
            order
                .lines
                .iter()
                .map(|l| format!("{} x {}", l.quantity, l.sku))
                .collect(),
        ));
    }
    blocks.push(Block::Para(
        "We will write again as soon as it ships.".into(),
    ));
    blocks.push(Block::Para(SIGNATURE.into()));
    email(
        Template::OrderConfirmed,
        &order.customer_email,
        format!("Your order {} is confirmed ({total})", order.order_id),
        Some(&order.order_id),
        blocks,
    )
}

/// The cancellation reason as a customer reads it, and what happens to their money.
pub fn cancellation_in_words(reason: &str) -> (&'static str, &'static str) {
    match reason {
        "payment-failed" => (
            "your payment was declined",
            "Nothing was charged to your card.",
        ),
        "out-of-stock" => (
            "some of the items are out of stock",
            "If anything was charged, it is refunded in full.",
        ),
        "fraud-suspected" => (
            "we could not verify the order",
            "If anything was charged, it is refunded in full. Please contact us if this was you.",
        ),
        _ => (
            "it could not be completed",
            "If anything was charged, it is refunded in full.",
        ),
    }
}

pub fn order_cancelled(order: &OrderCancelled) -> Email {
    let (why, money) = cancellation_in_words(&order.reason);
    email(
        Template::OrderCancelled,
        &order.customer_email,
        format!("Your order {} was cancelled", order.order_id),
        Some(&order.order_id),
        vec![
            Block::Para("Hello,".into()),
            Block::Para(format!(
                "we are sorry: your order {} was cancelled because {why}.",
                order.order_id
            )),
            Block::Para(money.into()),
            Block::Para(SIGNATURE.into()),
        ],
    )
}

pub fn order_shipped(shipment: &OrderShipped) -> Email {
    email(
        Template::OrderShipped,
        &shipment.customer_email,
        format!("Your order {} has shipped", shipment.order_id),
        Some(&shipment.order_id),
        vec![
            Block::Para("Hello,".into()),
            Block::Para(format!(
                "your order {} is on its way with {}.",
                shipment.order_id, shipment.carrier
            )),
            Block::List(vec![
                format!("Carrier: {}", shipment.carrier),
                format!("Tracking number: {}", shipment.tracking_number),
            ]),
            Block::Para(SIGNATURE.into()),
        ],
    )
}

pub fn welcome(customer: &CustomerRegistered) -> Email {
    let name = one_line(&customer.name);
    email(
        Template::Welcome,
        &customer.email,
        format!("Welcome to Orderflow, {name}"),
        None,
        vec![
            Block::Para(format!("Hello {name},")),
            Block::Para(
                "welcome to Orderflow! Your account is ready: we will email you about every \
                 order you place, when it is confirmed and when it ships."
                    .into(),
            ),
            Block::Para(SIGNATURE.into()),
        ],
    )
}

/// Values from events end up in the subject header: no line breaks or control characters.
fn one_line(s: &str) -> String {
    s.split(|c: char| c.is_control())
        .filter(|part| !part.trim().is_empty())
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ")
}

fn text_of(blocks: &[Block]) -> String {
    let parts: Vec<String> = blocks
        .iter()
        .map(|b| match b {
            Block::Para(p) => p.clone(),
            Block::List(items) => items
                .iter()
                .map(|i| format!("  - {i}"))
                .collect::<Vec<_>>()
                .join("\n"),
        })
        .collect();
    format!("{}\n", parts.join("\n\n"))
}

fn html_of(blocks: &[Block]) -> String {
    let mut html = String::from("<!DOCTYPE html><html><body>");
    for b in blocks {
        match b {
            Block::Para(p) => html.push_str(&format!("<p>{}</p>", escape(p))),
            Block::List(items) => {
                html.push_str("<ul>");
                for i in items {
                    html.push_str(&format!("<li>{}</li>", escape(i)));
                }
                html.push_str("</ul>");
            }
        }
    }
    html.push_str("</body></html>");
    html
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use contracts::{Currency, StockLine};

    fn confirmed() -> OrderConfirmed {
        OrderConfirmed {
            order_id: "ord-1001".into(),
            customer_id: "cus-ada".into(),
            customer_email: "ada@example.com".into(),
            total: 3300,
            currency: Currency::try_from("EUR".to_string()).unwrap(),
            payment_id: "pay_1".into(),
            reservation_id: "res_1".into(),
            lines: vec![
                StockLine {
                    sku: "MUG-RED".into(),
                    quantity: 2,
                },
                StockLine {
                    sku: "TEA-GREEN".into(),
                    quantity: 1,
                },
            ],
        }
    }

    #[test]
    fn order_confirmed_shows_the_formatted_total_and_the_lines() {
        let e = order_confirmed(&confirmed());
        assert_eq!(e.template.name(), "order-confirmed");
        assert_eq!(e.to, "ada@example.com");
        assert_eq!(e.subject, "Your order ord-1001 is confirmed (33.00 EUR)");
        assert!(e.text.contains("payment of 33.00 EUR"), "{}", e.text);
        assert!(
            e.text.contains("  - 2 x MUG-RED\n  - 1 x TEA-GREEN"),
            "{}",
            e.text
        );
        assert!(e.html.contains("<li>2 x MUG-RED</li>"), "{}", e.html);
        assert_eq!(e.order_id.as_deref(), Some("ord-1001"));
        assert_eq!(e.check(), Ok(()));
    }

    #[test]
    fn order_cancelled_gives_the_reason_in_words() {
        let mut o = OrderCancelled {
            order_id: "ord-7".into(),
            customer_id: "cus-1".into(),
            customer_email: "bob@example.com".into(),
            reason: "out-of-stock".into(),
        };
        let e = order_cancelled(&o);
        assert_eq!(e.template.name(), "order-cancelled");
        assert_eq!(e.subject, "Your order ord-7 was cancelled");
        assert!(
            e.text
                .contains("cancelled because some of the items are out of stock."),
            "{}",
            e.text
        );
        assert!(
            !e.text.contains("out-of-stock"),
            "no reason codes for people"
        );
        o.reason = "payment-failed".into();
        assert!(order_cancelled(&o)
            .text
            .contains("because your payment was declined"));
        o.reason = "fraud-suspected".into();
        assert!(order_cancelled(&o).text.contains("could not verify"));
        o.reason = "something-new".into();
        assert!(order_cancelled(&o).text.contains("could not be completed"));
    }

    #[test]
    fn order_shipped_names_the_carrier_and_tracking_number() {
        let e = order_shipped(&OrderShipped {
            order_id: "ord-9".into(),
            shipment_id: "shp_1".into(),
            carrier: "DHL".into(),
            tracking_number: "JD000123456789".into(),
            customer_email: "cy@example.com".into(),
        });
        assert_eq!(e.template.name(), "order-shipped");
        assert_eq!(e.subject, "Your order ord-9 has shipped");
        assert!(e.text.contains("on its way with DHL"));
        assert!(e.text.contains("Tracking number: JD000123456789"));
        assert!(e.html.contains("<li>Tracking number: JD000123456789</li>"));
    }

    #[test]
    fn welcome_greets_by_name_and_keeps_the_subject_on_one_line() {
        let mut c = CustomerRegistered {
            customer_id: "cus-1".into(),
            email: " dee@example.com ".into(),
            name: "Dee <Dee>".into(),
        };
        let e = welcome(&c);
        assert_eq!(e.template.name(), "welcome");
        assert_eq!(e.to, "dee@example.com");
        assert_eq!(e.subject, "Welcome to Orderflow, Dee <Dee>");
        assert!(e.text.starts_with("Hello Dee <Dee>,\n\n"), "{}", e.text);
        assert!(e.html.contains("Hello Dee &lt;Dee&gt;,"), "{}", e.html);
        assert_eq!(e.order_id, None);
        c.name = "Eve\r\nBcc: all@example.com".into();
        assert_eq!(
            welcome(&c).subject,
            "Welcome to Orderflow, Eve Bcc: all@example.com"
        );
    }

    #[test]
    fn recipients_that_are_not_addresses_are_refused() {
        let mut e = welcome(&CustomerRegistered {
            customer_id: "c".into(),
            email: "x@example.com".into(),
            name: "X".into(),
        });
        assert_eq!(e.check(), Ok(()));
        for bad in ["", "nobody", "@example.com", "a@b", "a b@example.com"] {
            e.to = bad.into();
            assert!(e.check().is_err(), "{bad:?} accepted");
        }
    }
}
