//! `wrong-world`: a valid wasm32-wasip2 component that does NOT implement
//! the `komlog:impulse/impulse` world.
//!
//! It exports one function, `hello: func() -> string`, from its own WIT
//! package `test:other` (see `wit/other.wit`), and imports no komlog
//! interface. komlogd's tests load it to check that a component of the wrong
//! world is rejected with a clear error instead of failing later (or
//! trapping) on the first fire.

wit_bindgen::generate!({
    path: "wit",
    world: "other",
});

/// The component's implementation of the `other` world.
struct Other;

impl Guest for Other {
    fn hello() -> String {
        "hello from a component that is not an impulse".to_string()
    }
}

export!(Other);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_says_what_it_is() {
        assert!(Other::hello().contains("not an impulse"));
    }
}
