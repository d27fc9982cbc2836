//! Chunk-path micro-benchmark (run: `cargo bench --bench chunk`): seal + open
//! throughput per chunk size, and the cost of serving one random 4 KiB read
//! (which must authenticate a whole chunk). This is the measurement behind the
//! 64 KiB chunk size (docs/BENCHMARKS.md, "Chunk size").

use std::hint::black_box;
use std::time::Instant;

use coffer::crypto::{chunk, SecretKey};

fn main() {
    let key = SecretKey::from_bytes([7; 32]);
    let file_id = [1u8; 16];
    println!(
        "{:>8} {:>12} {:>12} {:>14} {:>12}",
        "chunk", "seal MB/s", "open MB/s", "4K read (us)", "overhead"
    );
    for log2 in [12u32, 14, 16, 18] {
        let size = 1usize << log2;
        let plain = vec![0x5au8; size];
        let total: usize = 256 << 20;
        let n = total / size;
        let t = Instant::now();
        let mut last = Vec::new();
        for i in 0..n {
            last = chunk::seal(&key, &file_id, 0, i as u64, black_box(&plain));
            black_box(blake3::hash(&last));
        }
        let seal = total as f64 / t.elapsed().as_secs_f64() / 1e6;
        let stored = chunk::seal(&key, &file_id, 0, 0, &plain);
        let t = Instant::now();
        for _ in 0..n {
            black_box(blake3::hash(black_box(&stored)));
            black_box(chunk::open(&key, &file_id, 0, 0, black_box(&stored)).unwrap());
        }
        let open = total as f64 / t.elapsed().as_secs_f64() / 1e6;
        // One random 4 KiB read costs one whole chunk's hash + open.
        let per_read_us = size as f64 / (open * 1e6) * 1e6;
        let overhead = 40.0 / size as f64 * 100.0;
        black_box(&last);
        println!(
            "{:>7}K {:>12.0} {:>12.0} {:>14.1} {:>11.2}%",
            size / 1024,
            seal,
            open,
            per_read_us,
            overhead
        );
    }
}
