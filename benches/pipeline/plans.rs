//! Plan stability: the 1-endpoint burn-down with the statistics a user's database may have
//! when the worker starts, each beside the usual burn-down in the same run. Runs alternate
//! (usual, after an ANALYZE with the backlog written, after an ANALYZE of empty tables) so a
//! busy machine slows them alike; each ratio is the figure over the mean of the usual runs.

use crate::burn::{burn_down, Stats};
use crate::{Bench, Figure};

const SCENARIO: &str = "plans";
/// The worst ratio accepted against the usual burn-down (within 15 %).
const WITHIN: f64 = 0.85;

pub async fn run(b: &Bench) -> Vec<Figure> {
    let (events, rounds) = if b.quick { (20_000, 1) } else { (100_000, 2) };
    let order = [Stats::Events, Stats::Backlog, Stats::Empty];
    let mut rates: Vec<(Stats, f64)> = Vec::new();
    for round in 0..rounds {
        for stats in order {
            eprintln!("plans: {events} events x 1 endpoint, {stats:?} statistics (round {round})");
            let burn = burn_down(b, events, 1, false, stats).await;
            rates.push((stats, burn.per_second));
        }
    }
    let mean = |which: Stats| {
        let v: Vec<f64> = rates
            .iter()
            .filter(|(s, _)| std::mem::discriminant(s) == std::mem::discriminant(&which))
            .map(|(_, r)| *r)
            .collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    let usual = mean(Stats::Events);
    let backlog = mean(Stats::Backlog);
    let empty = mean(Stats::Empty);
    vec![
        Figure::new(
            SCENARIO,
            format!("{events} x 1, usual (events analyzed)"),
            usual,
            "deliv/s",
        ),
        Figure::new(
            SCENARIO,
            "after ANALYZE with backlog, no deliveries",
            backlog,
            "deliv/s",
        ),
        Figure::new(SCENARIO, "backlog analyzed / usual", backlog / usual, "x").at_least(WITHIN),
        Figure::new(SCENARIO, "after ANALYZE of empty tables", empty, "deliv/s"),
        Figure::new(SCENARIO, "empty analyzed / usual", empty / usual, "x").at_least(WITHIN),
    ]
}
