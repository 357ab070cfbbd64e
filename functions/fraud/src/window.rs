//! The orders-from-many-places rule, free of I/O.
//!
//! A customer who places `min_orders` or more orders whose times fall within
//! `window_seconds` of each other (the closed interval: latest minus earliest is at most the
//! window), from at least `min_locations` distinct known locations, is suspected for every
//! order of that window. An order whose location is unknown (a version 1 `OrderPlaced`
//! without an address) counts as an order but never as a distinct location: "unknown" is
//! not evidence of being somewhere else.
//!
//! Times are the orders' `occurredAt`, never their arrival: a queue that delivers a burst
//! late or out of order must find the same windows. That is why the candidate windows are
//! anchored on the orders' own times rather than on "now".
//!
//! Only windows that contain the checked order are looked at. A pattern is found by the
//! check of whichever of its orders is judged after all the others are known, so looking
//! elsewhere would only find, again, what an earlier check already found. The
//! same property keeps the verdicts consistent: an order lies in a qualifying window exactly
//! when its own check sees that window (the window's start is within the checked order's
//! candidate starts), so an order that its own check clears is not, at that moment, part of
//! any pattern.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use chrono::{DateTime, Duration, Utc};
use contracts::{FraudPattern, FraudRule, Location};

/// One order as the rule sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sighting {
    pub order_id: String,
    /// When the order was placed (`occurredAt`), not when it arrived.
    pub at: DateTime<Utc>,
    /// `None` when unknown (version 1 orders).
    pub location: Option<Location>,
    /// Already suspected: never flagged again.
    pub suspected: bool,
}

/// A set of one customer's orders within the rule's window of each other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// The earliest and latest order time in the window.
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// Oldest first (ties by order id).
    pub order_ids: Vec<String>,
    /// The distinct known locations, sorted.
    pub locations: Vec<Location>,
}

impl Window {
    /// The window as `FraudSuspected` reports it.
    pub fn pattern(
        &self,
        customer_id: &str,
        rule: FraudRule,
        found_by_order_id: &str,
    ) -> FraudPattern {
        FraudPattern {
            customer_id: customer_id.to_string(),
            rule,
            window_start: self.start,
            window_end: self.end,
            order_ids: self.order_ids.clone(),
            locations: self.locations.clone(),
            found_by_order_id: found_by_order_id.to_string(),
        }
    }

    fn qualifies(&self, rule: &FraudRule) -> bool {
        self.order_ids.len() >= as_count(rule.min_orders)
            && self.locations.len() >= as_count(rule.min_locations)
    }
}

/// An order to flag, with the first qualifying window (by start) that contains it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flag {
    pub order_id: String,
    pub window: Window,
}

/// What checking one order found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assessment {
    /// The order is in at least one qualifying window. `flags` are the orders of those
    /// windows not suspected yet, oldest window first; empty when all of them already are.
    Suspected { flags: Vec<Flag> },
    /// No window around the order qualifies: the most orders, and separately the most
    /// distinct known locations, found in one window around it.
    Cleared {
        orders_in_window: u32,
        locations_in_window: u32,
    },
}

/// Checks `order` against the customer's `known` orders (which may include it, and copies).
pub fn assess(rule: &FraudRule, order: &Sighting, known: &[Sighting]) -> Assessment {
    let sightings = distinct(order, known);
    // A copy of the order with an earlier time wins, as for every other order.
    let t = sightings
        .iter()
        .find(|s| s.order_id == order.order_id)
        .map_or(order.at, |s| s.at);
    let width = Duration::seconds(i64::from(rule.window_seconds));
    // Every window containing t is covered by one starting at an order's time in [t-W, t];
    // orders sharing a time give one start.
    let starts: BTreeSet<DateTime<Utc>> = sightings
        .iter()
        .map(|s| s.at)
        .filter(|at| *at >= t - width && *at <= t)
        .collect();
    let windows: Vec<Window> = starts
        .into_iter()
        .map(|start| window_between(&sightings, start, start + width))
        .collect();

    let qualifying: Vec<&Window> = windows.iter().filter(|w| w.qualifies(rule)).collect();
    if qualifying.is_empty() {
        return Assessment::Cleared {
            orders_in_window: windows
                .iter()
                .map(|w| count(w.order_ids.len()))
                .max()
                .unwrap_or(1),
            locations_in_window: windows
                .iter()
                .map(|w| count(w.locations.len()))
                .max()
                .unwrap_or(0),
        };
    }
    let suspected: HashSet<&str> = sightings
        .iter()
        .filter(|s| s.suspected)
        .map(|s| s.order_id.as_str())
        .collect();
    let mut flagged: HashSet<&str> = HashSet::new();
    let mut flags = Vec::new();
    for window in qualifying {
        for id in &window.order_ids {
            if !suspected.contains(id.as_str()) && flagged.insert(id.as_str()) {
                flags.push(Flag {
                    order_id: id.clone(),
                    window: window.clone(),
                });
            }
        }
    }
    Assessment::Suspected { flags }
}

/// One sighting per order id, oldest first: a copy counts once, at its earliest time, and
/// is suspected if any copy is (so that no copy is flagged a second time).
fn distinct(order: &Sighting, known: &[Sighting]) -> Vec<Sighting> {
    let mut by_id: BTreeMap<&str, Sighting> = BTreeMap::new();
    for s in std::iter::once(order).chain(known) {
        match by_id.get_mut(s.order_id.as_str()) {
            None => {
                by_id.insert(&s.order_id, s.clone());
            }
            Some(kept) => {
                let suspected = kept.suspected || s.suspected;
                if s.at < kept.at {
                    *kept = s.clone();
                }
                kept.suspected = suspected;
            }
        }
    }
    let mut sightings: Vec<Sighting> = by_id.into_values().collect();
    sightings.sort_by(|a, b| (a.at, &a.order_id).cmp(&(b.at, &b.order_id)));
    sightings
}

/// The orders of `sorted` with a time in `[from, to]`.
fn window_between(sorted: &[Sighting], from: DateTime<Utc>, to: DateTime<Utc>) -> Window {
    let members: Vec<&Sighting> = sorted
        .iter()
        .filter(|s| s.at >= from && s.at <= to)
        .collect();
    let locations: BTreeSet<&Location> =
        members.iter().filter_map(|s| s.location.as_ref()).collect();
    Window {
        start: members.first().map_or(from, |s| s.at),
        end: members.last().map_or(from, |s| s.at),
        order_ids: members.iter().map(|s| s.order_id.clone()).collect(),
        locations: locations.into_iter().cloned().collect(),
    }
}

fn as_count(threshold: u32) -> usize {
    usize::try_from(threshold).unwrap_or(usize::MAX)
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use contracts::Country;

    const RULE: FraudRule = FraudRule {
        min_orders: 5,
        window_seconds: 60,
        min_locations: 2,
    };

    fn at(seconds: f64) -> DateTime<Utc> {
        let base: DateTime<Utc> = "2026-11-21T10:00:00Z".parse().unwrap();
        base + Duration::milliseconds((seconds * 1000.0) as i64)
    }

    fn location(country: &str, city: &str) -> Location {
        Location::new(Country::try_from(country.to_string()).unwrap(), city)
    }

    fn paris() -> Location {
        location("FR", "Paris")
    }

    fn berlin() -> Location {
        location("DE", "Berlin")
    }

    fn order(id: &str, seconds: f64, location: Option<Location>) -> Sighting {
        Sighting {
            order_id: id.into(),
            at: at(seconds),
            location,
            suspected: false,
        }
    }

    /// Five orders within 40 s, alternating Paris and Berlin.
    fn burst() -> Vec<Sighting> {
        (0..5)
            .map(|i| {
                let city = if i % 2 == 0 { paris() } else { berlin() };
                order(&format!("ord-{}", i + 1), f64::from(i) * 10.0, Some(city))
            })
            .collect()
    }

    fn ids(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("ord-{i}")).collect()
    }

    fn window(from: f64, to: f64, order_ids: Vec<String>, locations: Vec<Location>) -> Window {
        Window {
            start: at(from),
            end: at(to),
            order_ids,
            locations,
        }
    }

    fn flags_for(order_ids: &[String], window: &Window) -> Vec<Flag> {
        order_ids
            .iter()
            .map(|id| Flag {
                order_id: id.clone(),
                window: window.clone(),
            })
            .collect()
    }

    #[test]
    fn four_orders_from_two_cities_are_cleared() {
        let known = &burst()[..4];

        let assessment = assess(&RULE, &known[3], known);

        assert_eq!(
            assessment,
            Assessment::Cleared {
                orders_in_window: 4,
                locations_in_window: 2
            }
        );
    }

    #[test]
    fn five_orders_from_one_city_are_cleared() {
        let known: Vec<Sighting> = (1..=5)
            .map(|i| order(&format!("ord-{i}"), f64::from(i), Some(paris())))
            .collect();

        let assessment = assess(&RULE, &known[4], &known);

        assert_eq!(
            assessment,
            Assessment::Cleared {
                orders_in_window: 5,
                locations_in_window: 1
            }
        );
    }

    #[test]
    fn five_orders_from_two_cities_flag_all_five() {
        let known = burst();

        let assessment = assess(&RULE, &known[4], &known);

        let expected = window(0.0, 40.0, ids(5), vec![berlin(), paris()]);
        assert_eq!(
            assessment,
            Assessment::Suspected {
                flags: flags_for(&ids(5), &expected)
            }
        );
    }

    #[test]
    fn six_orders_spread_over_61_seconds_never_have_five_within_60() {
        let cities = [paris(), berlin(), paris(), berlin(), paris(), berlin()];
        let times = [0.0, 0.5, 30.0, 31.0, 60.5, 61.0];
        let known: Vec<Sighting> = times
            .iter()
            .zip(cities)
            .enumerate()
            .map(|(i, (t, city))| order(&format!("ord-{}", i + 1), *t, Some(city)))
            .collect();

        let assessments: Vec<Assessment> = known.iter().map(|o| assess(&RULE, o, &known)).collect();

        let cleared = Assessment::Cleared {
            orders_in_window: 4,
            locations_in_window: 2,
        };
        assert_eq!(assessments, vec![cleared; 6]);
    }

    #[test]
    fn orders_exactly_the_window_apart_are_in_one_window() {
        let times = [0.0, 0.5, 30.0, 31.0, 60.0];
        let known: Vec<Sighting> = times
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let city = if i % 2 == 0 { paris() } else { berlin() };
                order(&format!("ord-{}", i + 1), *t, Some(city))
            })
            .collect();

        let assessment = assess(&RULE, &known[4], &known);

        let expected = window(0.0, 60.0, ids(5), vec![berlin(), paris()]);
        assert_eq!(
            assessment,
            Assessment::Suspected {
                flags: flags_for(&ids(5), &expected)
            }
        );
    }

    #[test]
    fn an_order_arriving_late_finds_the_window_it_belongs_to() {
        let burst = burst();
        // The oldest order is the last to arrive: it is checked with the others known.
        let late = &burst[0];

        let assessment = assess(&RULE, late, &burst[1..]);

        let expected = window(0.0, 40.0, ids(5), vec![berlin(), paris()]);
        assert_eq!(
            assessment,
            Assessment::Suspected {
                flags: flags_for(&ids(5), &expected)
            }
        );
    }

    #[test]
    fn a_copy_of_an_order_counts_once() {
        let mut known = burst()[..4].to_vec();
        let copy = Sighting {
            at: at(35.0),
            ..known[3].clone()
        };
        known.push(copy.clone());

        let assessment = assess(&RULE, &copy, &known);

        assert_eq!(
            assessment,
            Assessment::Cleared {
                orders_in_window: 4,
                locations_in_window: 2
            }
        );
    }

    #[test]
    fn an_unknown_location_is_not_another_place() {
        let mut known: Vec<Sighting> = (1..=4)
            .map(|i| order(&format!("ord-{i}"), f64::from(i), Some(paris())))
            .collect();
        known.push(order("ord-5", 5.0, None));

        let assessment = assess(&RULE, &known[4], &known);

        assert_eq!(
            assessment,
            Assessment::Cleared {
                orders_in_window: 5,
                locations_in_window: 1
            }
        );
    }

    #[test]
    fn already_suspected_orders_are_not_flagged_again() {
        let mut known = burst();
        known[0].suspected = true;
        known[2].suspected = true;

        let assessment = assess(&RULE, &known[4], &known);

        let expected = window(0.0, 40.0, ids(5), vec![berlin(), paris()]);
        let not_yet: Vec<String> = ["ord-2", "ord-4", "ord-5"].map(String::from).to_vec();
        assert_eq!(
            assessment,
            Assessment::Suspected {
                flags: flags_for(&not_yet, &expected)
            }
        );
    }

    #[test]
    fn a_pattern_whose_orders_are_all_suspected_flags_nothing() {
        let known: Vec<Sighting> = burst()
            .into_iter()
            .map(|s| Sighting {
                suspected: true,
                ..s
            })
            .collect();

        let assessment = assess(&RULE, &known[4], &known);

        assert_eq!(assessment, Assessment::Suspected { flags: vec![] });
    }

    #[test]
    fn every_arrival_order_of_a_burst_flags_the_same_orders_once() {
        let burst = burst();
        let mut arrivals: Vec<usize> = (0..burst.len()).collect();
        let mut permutations = Vec::new();
        permute(&mut arrivals, 0, &mut permutations);
        assert_eq!(permutations.len(), 120);

        for arrival in permutations {
            // Each order is judged against the orders that arrived before it and itself;
            // the flags of each check are applied before the next one.
            let mut known: Vec<Sighting> = Vec::new();
            let mut flagged: Vec<String> = Vec::new();
            for &i in &arrival {
                known.push(burst[i].clone());
                if let Assessment::Suspected { flags } = assess(&RULE, &burst[i], &known) {
                    for flag in flags {
                        flagged.push(flag.order_id.clone());
                        for s in known.iter_mut().filter(|s| s.order_id == flag.order_id) {
                            s.suspected = true;
                        }
                    }
                }
            }
            flagged.sort();
            assert_eq!(flagged, ids(5), "arrival order {arrival:?}");
        }
    }

    fn permute(items: &mut Vec<usize>, k: usize, out: &mut Vec<Vec<usize>>) {
        if k == items.len() {
            out.push(items.clone());
            return;
        }
        for i in k..items.len() {
            items.swap(k, i);
            permute(items, k + 1, out);
            items.swap(k, i);
        }
    }

    #[test]
    fn only_windows_around_the_checked_order_count() {
        // A complete pattern in the first minute; the checked order is two minutes later.
        let mut known = burst();
        let later = order("ord-6", 180.0, Some(paris()));
        known.push(later.clone());

        let assessment = assess(&RULE, &later, &known);

        assert_eq!(
            assessment,
            Assessment::Cleared {
                orders_in_window: 1,
                locations_in_window: 1
            }
        );
    }
}
