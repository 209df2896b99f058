//! kafka_read_native BOOTSTRAP TOPIC: reads partition 0 of the topic from offset 0 to its end
//! offset with librdkafka (the rdkafka crate), configured as cdc/sync/consume_confluent.py
//! configures confluent-kafka, touching each message's key and value, and prints the count, the
//! wall time from the first message to the last, and the process's CPU time.

use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

fn cpu_seconds() -> f64 {
    // utime and stime, fields 14 and 15 of /proc/self/stat, in clock ticks (100 per second here).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: kafka_read_native BOOTSTRAP TOPIC");
        std::process::exit(2);
    }
    let (bootstrap, topic) = (&args[1], &args[2]);
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "kafka-read-native")
        .set("enable.auto.commit", "false")
        // cdc.sync.consume_confluent.FETCH_SETTINGS
        .set("queued.max.messages.kbytes", "8192")
        .set("fetch.queue.backoff.ms", "10")
        .set("fetch.max.bytes", "4194304")
        .set("max.partition.fetch.bytes", "1048576")
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("a consumer");
    let (_, end) = consumer.fetch_watermarks(topic, 0, Duration::from_secs(10)).expect("the end offset");
    let mut partitions = TopicPartitionList::new();
    partitions.add_partition_offset(topic, 0, Offset::Beginning).expect("partition 0");
    consumer.assign(&partitions).expect("assigned");
    let cpu_before = cpu_seconds();
    let (mut read, mut bytes, mut first) = (0i64, 0usize, None);
    while read < end {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(500)) {
            first.get_or_insert_with(Instant::now);
            bytes += message.payload().map_or(0, <[u8]>::len) + message.key().map_or(0, <[u8]>::len);
            read += 1;
        }
    }
    let wall = first.map_or(0.0, |t| t.elapsed().as_secs_f64());
    let cpu = cpu_seconds() - cpu_before;
    println!(
        "{read} messages ({bytes} bytes) in {wall:.2} s = {:.0}/s; CPU {cpu:.2} s = {:.2} µs/message",
        read as f64 / wall,
        cpu / read as f64 * 1e6
    );
}
