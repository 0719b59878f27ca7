//! `trivial`: the cheapest possible impulse, for measuring call overhead.
//!
//! `on_update` returns `Ok(vec![])` without looking at the context (the
//! window is never decoded). `describe` returns `None`, so the
//! configuration must give the uris.

use komlog_guest::prelude::*;

/// Does nothing, as fast as possible.
struct Trivial;

impl Impulse for Trivial {
    fn on_update(_ctx: Context) -> Result<Vec<Sample>, String> {
        Ok(Vec::new())
    }
}

komlog_guest::export_impulse!(Trivial);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_nothing_even_for_a_garbage_window() {
        let ctx = Context::new(1, vec!["a".into()], vec![], vec![], b"not arrow".to_vec());
        assert_eq!(Trivial::on_update(ctx), Ok(vec![]));
        assert_eq!(Trivial::describe(), None);
    }
}
