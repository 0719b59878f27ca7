//! The Rust guest SDK decodes exactly what the host encodes: the window the
//! dispatcher builds for a fire, read back with `komlog_guest::window::Window`.

use komlog_guest::window::{Values, Window};
use komlogd::impulses::window::WindowEncoder;
use komlogd::model::Value;

#[test]
fn the_sdk_reads_host_windows() {
    let mut encoder = WindowEncoder::new();
    encoder.push("cpu.system", 10, &Value::Datapoint(1.5));
    encoder.push("cpu.system", 20, &Value::Datapoint(2.5));
    encoder.push(
        "host.disk",
        15,
        &Value::Datasource("Filesystem 1K-blocks\n".into()),
    );
    encoder.push("alice:x", -1, &Value::Datasource(String::new()));
    let mut bytes = Vec::new();
    encoder.finish_into(&mut bytes).unwrap();

    let window = Window::decode(&bytes).expect("decode");
    assert_eq!(
        window.uris().collect::<Vec<_>>(),
        vec!["cpu.system", "host.disk", "alice:x"]
    );
    let cpu = window.series("cpu.system").unwrap();
    assert_eq!(cpu.ts, vec![10, 20]);
    assert_eq!(cpu.values, Values::Datapoint(vec![1.5, 2.5]));
    let disk = window.series("host.disk").unwrap();
    assert_eq!(
        disk.values,
        Values::Datasource(vec!["Filesystem 1K-blocks\n".into()])
    );
    assert_eq!(window.series("alice:x").unwrap().ts, vec![-1]);
    assert_eq!(
        window
            .record_batches()
            .iter()
            .map(|b| b.num_rows())
            .sum::<usize>(),
        4
    );

    // An empty window (schema only) decodes to no series.
    encoder.finish_into(&mut bytes).unwrap();
    assert!(Window::decode(&bytes).unwrap().is_empty());
}
