//! DLP cost per KiB of inspected content (the target: at most 20 µs per KiB).
//!
//! Criterion reports time per iteration over a 16 KiB document; with `Throughput::Bytes` it
//! also prints bytes per second, from which µs per KiB follows (1 KiB/µs·20 = 51.2 MB/s).
//! Clean input is the common case (one prefilter pass); dirty input has a card, an email, an
//! SSN and an API key in every 1 KiB text block, all masked.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dlp::{Direction, Dlp, DlpConfig, Target};
use serde_json::{Value, json};

const BLOCKS: usize = 16;

fn block(dirty: bool) -> String {
    let mut text = String::new();
    let mut line = 0;
    while text.len() < 1024 - 120 {
        line += 1;
        text.push_str(&format!(
            "Row {line}: order 2026-12-{line:02} shipped to warehouse {line}, status ok. "
        ));
    }
    if dirty {
        text.push_str("card 4111 1111 1111 1111 mail ada@example.com ssn 123-45-6789 key AKIAIOSFODNN7EXAMPLE");
    }
    text.truncate(1024);
    text
}

fn document(dirty: bool) -> Value {
    let content: Vec<Value> = (0..BLOCKS)
        .map(|_| json!({"type": "text", "text": block(dirty)}))
        .collect();
    json!({"content": content})
}

fn bench(criterion: &mut Criterion) {
    let config: DlpConfig = serde_json::from_value(json!({
        "custom": [{"name": "employee_id", "pattern": "EMP-[0-9]{6}"}],
        "rules": [{"virtual_server": "crm", "output": {"action": "mask"}}]
    }))
    .unwrap();
    let dlp = Dlp::new(&config).unwrap();
    let target = Target {
        virtual_server: "crm",
        connector: "db",
        tool: Some("t"),
    };
    let side = dlp.side(&target, Direction::Output).unwrap();
    let mut group = criterion.benchmark_group("dlp_mask_16KiB");
    group.throughput(Throughput::Bytes((BLOCKS * 1024) as u64));
    for (name, dirty) in [("clean", false), ("dirty", true)] {
        let original = document(dirty);
        group.bench_function(name, |bencher| {
            bencher.iter_batched(
                || original.clone(),
                |mut value| black_box(dlp.mask(&mut value, side)),
                criterion::BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
