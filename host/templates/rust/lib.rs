//! `@NAME@`: a komlogd impulse.
//!
//! For each updated uri that holds numbers, it writes the mean of that uri's
//! samples in the window to the datapoint `<uri>.@NAME@` at the fire's
//! timestamp. How much history the window holds is set by `data_reqs` in
//! komlogd.yaml (by default, the latest sample only).

use komlog_guest::prelude::*;

struct Mean;

impl Impulse for Mean {
    fn on_update(ctx: Context) -> Result<Vec<Sample>, String> {
        let window = ctx.window()?;
        let mut out = Vec::new();
        for uri in &ctx.updated {
            let Some(values) = window.series(uri).and_then(|s| s.datapoints()) else {
                continue;
            };
            if values.is_empty() {
                continue;
            }
            let mean = values.iter().sum::<f64>() / values.len() as f64;
            out.push(Sample::datapoint(format!("{uri}.@NAME@"), ctx.ts, mean));
        }
        Ok(out)
    }
}

komlog_guest::export_impulse!(Mean);

// The impulse's logic is plain Rust: `cargo test` runs these natively, with a
// window built in the test.
#[cfg(test)]
mod tests {
    use super::*;
    use komlog_guest::window::encode;

    const T: i64 = 1_700_000_000_000_000;

    fn context(updated: &[&str], window: &[Series]) -> Context {
        Context::new(
            T,
            updated.iter().map(|u| u.to_string()).collect(),
            vec![],
            vec![],
            encode(window).expect("encode the window"),
        )
    }

    #[test]
    fn writes_the_mean_of_each_updated_number_series() {
        let window = [
            Series::datapoint("cpu.user", vec![T - 2, T - 1, T], vec![1.0, 2.0, 6.0]),
            Series::datapoint("cpu.system", vec![T], vec![5.0]),
            Series::datasource("notes", vec![T], ["text"]),
        ];
        let out = Mean::on_update(context(&["cpu.user", "notes"], &window)).unwrap();
        assert_eq!(out, vec![Sample::datapoint("cpu.user.@NAME@", T, 3.0)]);
    }

    #[test]
    fn an_update_with_no_numbers_writes_nothing() {
        let window = [Series::datasource("notes", vec![T], ["text"])];
        let out = Mean::on_update(context(&["notes", "absent"], &window)).unwrap();
        assert_eq!(out, vec![]);
    }
}
