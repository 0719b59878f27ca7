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
