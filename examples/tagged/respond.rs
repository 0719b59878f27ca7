// Shared body of the `tagged-a` and `tagged-b` test guests (included by both).
//
// For each fire it writes one datapoint: its TAG, at `ctx.ts`, to the uri named
// by the `out` param (default `tagged`). Two builds differing only in TAG are
// two module versions whose outputs say which one ran.

use komlog_guest::prelude::*;

struct Tagged;

impl Impulse for Tagged {
    fn on_update(ctx: Context) -> Result<Vec<Sample>, String> {
        let out = ctx.param("out").unwrap_or("tagged");
        Ok(vec![Sample::datapoint(out, ctx.ts, TAG)])
    }
}

komlog_guest::export_impulse!(Tagged);
