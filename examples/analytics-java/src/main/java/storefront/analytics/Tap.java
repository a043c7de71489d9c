package storefront.analytics;

import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Base64;
import java.util.Collection;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.record.TimestampType;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

/**
 * The analytics tap: reads every storefront topic under a prefix in its own
 * consumer group and prints one JSON line per record, its value decoded by
 * Avro's {@code BinaryMessageDecoder} (see {@link Schemas}).
 *
 * <p>At-least-once: the offset after a record is committed only once the
 * record is printed (every 5 s, and when it stops), so a second run in the
 * same group goes on where the first stopped.
 */
final class Tap {
    /** Every topic, without the prefix; the dead letters are the refused records as they were. */
    static final List<String> TOPICS = List.of(
        "page.requested", "user.resolved", "history.fetched", "ads.selected",
        "page.completed", "callback.reported",
        "customers", "credentials", "catalog", "orders", "sessions",
        "dead-letters", "analytics.pages-per-minute");
    static final String DEAD_LETTERS = "dead-letters";

    private Tap() {}

    static int run(Args args) throws Exception {
        String prefix = args.get("topic-prefix", "STOREFRONT_TOPIC_PREFIX", "");
        String bootstrap = args.get("bootstrap-servers", "KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092");
        String group = args.get("group", prefix + "analytics.java-tap");
        String clientId = args.get("client-id", prefix + "analytics");
        Schemas schemas = Schemas.load(Path.of(args.get("schemas", Main.defaultSchemas())));
        Long maxRecords = args.number("max-records");
        Long idleMs = args.has("idle-timeout")
            ? (long) (Double.parseDouble(args.get("idle-timeout", "0")) * 1000) : null;

        Properties props = new Properties();
        props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        // Taps share one client id, so a broker quota on it bounds them all.
        props.put(ConsumerConfig.CLIENT_ID_CONFIG, clientId);
        props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        // page.completed is written in transactions; the Java client's
        // default, read_uncommitted, would also show aborted pages.
        props.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());

        PrintStream out = new PrintStream(System.out, false, StandardCharsets.UTF_8);
        Map<TopicPartition, OffsetAndMetadata> printed = new HashMap<>();
        long count = 0;
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(props)) {
            long[] lastActivity = {System.nanoTime()};
            consumer.subscribe(TOPICS.stream().map(t -> prefix + t).toList(), new ConsumerRebalanceListener() {
                @Override
                public void onPartitionsRevoked(Collection<TopicPartition> partitions) {
                    // Hand back what was printed before the partitions move.
                    commit(consumer, printed);
                }

                @Override
                public void onPartitionsAssigned(Collection<TopicPartition> partitions) {
                    lastActivity[0] = System.nanoTime();
                }
            });
            long lastCommit = System.nanoTime();
            loop:
            while (maxRecords == null || count < maxRecords) {
                var records = consumer.poll(Duration.ofMillis(500));
                if (records.isEmpty()) {
                    if (idleMs != null && (System.nanoTime() - lastActivity[0]) / 1_000_000 >= idleMs) {
                        break;
                    }
                }
                for (ConsumerRecord<byte[], byte[]> record : records) {
                    lastActivity[0] = System.nanoTime();
                    out.println(describe(record, prefix, schemas));
                    printed.put(new TopicPartition(record.topic(), record.partition()),
                        new OffsetAndMetadata(record.offset() + 1));
                    count++;
                    if (maxRecords != null && count >= maxRecords) {
                        break loop;
                    }
                }
                out.flush();
                if (System.nanoTime() - lastCommit > 5_000_000_000L) {
                    commit(consumer, printed);
                    lastCommit = System.nanoTime();
                }
            }
            out.flush();
            commit(consumer, printed);
        }
        return 0;
    }

    private static void commit(KafkaConsumer<?, ?> consumer, Map<TopicPartition, OffsetAndMetadata> printed) {
        if (!printed.isEmpty()) {
            consumer.commitSync(printed);
            printed.clear();
        }
    }

    /** One record as a JSON line: position, key, headers, and the decoded value or why not. */
    static String describe(ConsumerRecord<byte[], byte[]> record, String prefix, Schemas schemas) {
        StringBuilder out = new StringBuilder(512);
        out.append("{\"topic\":");
        Json.string(out, record.topic());
        out.append(",\"partition\":").append(record.partition());
        out.append(",\"offset\":").append(record.offset());
        out.append(",\"timestamp_ms\":");
        out.append(record.timestampType() == TimestampType.NO_TIMESTAMP_TYPE ? "null" : Long.toString(record.timestamp()));
        out.append(",\"key\":");
        Json.write(out, record.key() == null ? null : new String(record.key(), StandardCharsets.UTF_8));
        Map<String, String> headers = new java.util.LinkedHashMap<>();
        for (Header header : record.headers()) {
            headers.put(header.key(), header.value() == null ? null : new String(header.value(), StandardCharsets.UTF_8));
        }
        out.append(",\"headers\":");
        Json.write(out, headers);
        out.append(",\"event_type\":");
        Json.write(out, headers.get("event-type"));
        byte[] payload = record.value();
        if (record.topic().equals(prefix + DEAD_LETTERS)) {
            // The refused record unchanged: it may not even be Avro.
            Map<String, String> dlq = new java.util.LinkedHashMap<>();
            headers.forEach((k, v) -> {
                if (k.startsWith("dlq-")) {
                    dlq.put(k, v);
                }
            });
            out.append(",\"dead_letter\":");
            Json.write(out, dlq);
            out.append(",\"value_base64\":");
            Json.string(out, Base64.getEncoder().encodeToString(payload == null ? new byte[0] : payload));
        } else {
            try {
                Schemas.Decoded decoded = schemas.decode(payload);
                out.append(",\"value\":");
                Json.write(out, decoded.value());
                out.append(",\"schema\":");
                Json.string(out, decoded.writerFile());
            } catch (Exception e) {
                out.append(",\"error\":");
                Json.string(out, e.getClass().getSimpleName() + ": " + e.getMessage());
                out.append(",\"value_base64\":");
                Json.string(out, Base64.getEncoder().encodeToString(payload == null ? new byte[0] : payload));
            }
        }
        out.append('}');
        return out.toString();
    }
}
