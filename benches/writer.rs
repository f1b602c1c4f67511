//! Group commit: the cost of one durable transaction (fsync included) holding N new calls with
//! all their index entries, as the writer thread commits them. Per-call cost falls with N; that
//! is why the writer batches every waiting command into one transaction.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

use callmgr::config::StorageConfig;
use callmgr::core::machine::new_call;
use callmgr::core::model::CallId;
use callmgr::service::store::{Store, WriteTables};

fn batch_commit(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &StorageConfig { quick_repair: false, cache_size_bytes: 256 << 20 }).unwrap();
    let mut next: u128 = 1 << 100;
    let mut number: u64 = 0;
    let mut group = c.benchmark_group("writer_batch_commit");
    group.sample_size(20);
    for batch in [1usize, 64, 512] {
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_with_input(BenchmarkId::from_parameter(batch), &batch, |b, &batch| {
            b.iter(|| {
                let txn = store.begin_write().unwrap();
                {
                    let mut tables = WriteTables::open(&txn).unwrap();
                    for _ in 0..batch {
                        next += 1;
                        number += 1;
                        let seq = tables.next_queue_seq().unwrap();
                        let call = new_call(CallId(next), 1, format!("+1{:010}", 2_000_000_000 + number), None, 3, 1_780_000_000_000, seq);
                        tables.put_call(None, &call).unwrap();
                    }
                }
                txn.commit().unwrap();
            })
        });
    }
    group.finish();
}

criterion_group!(benches, batch_commit);
criterion_main!(benches);
