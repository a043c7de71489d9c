package storefront.analytics;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.avro.Schema;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.message.BinaryMessageEncoder;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.CloseOptions;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Named;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.Repartitioned;
import org.apache.kafka.streams.kstream.Suppressed;
import org.apache.kafka.streams.kstream.TimeWindows;
import org.apache.kafka.streams.processor.TimestampExtractor;
import org.apache.kafka.streams.processor.api.FixedKeyProcessor;
import org.apache.kafka.streams.processor.api.FixedKeyProcessorContext;
import org.apache.kafka.streams.processor.api.FixedKeyRecord;
import org.apache.kafka.streams.state.WindowStore;

/**
 * The Kafka Streams job: pages per minute from {@code page.completed}.
 *
 * <p>Event time is when the aggregator completed the page: the
 * {@code completed} milestone's {@code at_ms} (the record's timestamp for
 * pages written before milestones existed). Pages fall into tumbling
 * one-minute windows by that time; a window is emitted once, when it closes:
 * when a page completed more than the grace period after its end has been
 * read (so the last minute waits for the next page); a page read after its
 * minute closed is dropped (Streams' dropped-records metric). Per window: pages by
 * outcome (complete, partial by missing part, rejected, timed out), the p50
 * and p95 of latency (completion minus {@code context.requested_at_ms}) and
 * ad impressions (the ads on the pages) per product and per kind of reason,
 * written to {@code analytics.pages-per-minute} as Avro single-object records
 * of {@code schemas/avro/pages_per_minute.avsc}, keyed by the window's start
 * (ISO-8601), with an {@code event-type: pages_per_minute} header.
 *
 * <p>Exactly once ({@code exactly_once_v2}): it reads committed pages only,
 * and each window lands once; read the output with {@code read_committed}.
 */
final class PagesPerMinute {
    static final String INPUT = "page.completed";
    static final String OUTPUT = "analytics.pages-per-minute";
    static final String PAGE = "storefront.page_completed";
    static final String SUMMARY = "storefront.pages_per_minute";
    static final String EVENT_TYPE = "pages_per_minute";

    private PagesPerMinute() {}

    /** One decoded page and its event time. */
    record Page(GenericRecord record, long completedAtMs) {}

    /** When the page was completed: the event time of the job. */
    static long completedAt(GenericRecord page, long recordTimestamp) {
        Object milestones = page.get("milestones");
        if (milestones instanceof List<?> list) {
            for (Object item : list) {
                GenericRecord milestone = (GenericRecord) item;
                if ("completed".equals(milestone.get("stage").toString())) {
                    return (Long) milestone.get("at_ms");
                }
            }
        }
        return recordTimestamp;
    }

    /** Reads the event time from the value; a record that does not decode is dropped (-1). */
    static final class CompletedAt implements TimestampExtractor {
        private final Schemas schemas;
        private final AtomicLong activity;

        CompletedAt(Schemas schemas, AtomicLong activity) {
            this.schemas = schemas;
            this.activity = activity;
        }

        @Override
        public long extract(ConsumerRecord<Object, Object> record, long partitionTime) {
            activity.set(System.nanoTime());
            try {
                return completedAt(schemas.decode((byte[]) record.value()).value(), record.timestamp());
            } catch (IOException | RuntimeException e) {
                return -1;
            }
        }
    }

    /** The topology, on the topics under {@code prefix}. */
    static Topology topology(String prefix, Schemas schemas, Duration grace, AtomicLong activity, AtomicLong read,
            AtomicLong emitted) {
        Schema summary = schemas.current(SUMMARY);
        schemas.current(PAGE);
        StreamsBuilder builder = new StreamsBuilder();
        builder.stream(prefix + INPUT, Consumed.with(Serdes.String(), Serdes.ByteArray())
                .withTimestampExtractor(new CompletedAt(schemas, activity))
                .withName("page-completed"))
            // One count for the whole storefront: every page under one key,
            // through a one-partition repartition topic, so a single task
            // sees the pages of all partitions and its stream time closes
            // each minute once.
            .selectKey((session, page) -> "storefront", Named.as("one-key"))
            .repartition(Repartitioned.with(Serdes.String(), Serdes.ByteArray())
                .withName("pages").withNumberOfPartitions(1))
            .processValues(() -> new Decode(schemas, activity, read), Named.as("decode"))
            .groupByKey()
            .windowedBy(TimeWindows.ofSizeAndGrace(Duration.ofMinutes(1), grace))
            .aggregate(Minute::new, (key, page, minute) -> minute.add(page.record(), page.completedAtMs()),
                Named.as("minute"),
                Materialized.<String, Minute, WindowStore<Bytes, byte[]>>as("pages-per-minute")
                    .withKeySerde(Serdes.String()).withValueSerde(Minute.serde()))
            // Only the final count of a minute, once its grace has passed.
            .suppress(Suppressed.untilWindowCloses(Suppressed.BufferConfig.unbounded()).withName("closed-minutes"))
            .toStream(Named.as("minutes"))
            .peek((window, minute) -> emitted.incrementAndGet(), Named.as("count-emitted"))
            .map((window, minute) -> {
                long start = window.window().start();
                GenericRecord record = minute.toRecord(summary, start, window.window().end());
                return KeyValue.pair(Instant.ofEpochMilli(start).toString(), encode(summary, record));
            }, Named.as("encode"))
            .processValues(EventTypeHeader::new, Named.as("event-type"))
            .to(prefix + OUTPUT, Produced.with(Serdes.String(), Serdes.ByteArray()).withName("pages-per-minute"));
        return builder.build();
    }

    private static byte[] encode(Schema schema, GenericRecord record) {
        try {
            ByteArrayOutputStream out = new ByteArrayOutputStream();
            new BinaryMessageEncoder<GenericRecord>(org.apache.avro.generic.GenericData.get(), schema)
                .encode(record, out);
            return out.toByteArray();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** Decodes a page; its record timestamp is the extracted event time. */
    static final class Decode implements FixedKeyProcessor<String, byte[], Page> {
        private final Schemas schemas;
        private final AtomicLong activity;
        private final AtomicLong read;
        private FixedKeyProcessorContext<String, Page> context;

        Decode(Schemas schemas, AtomicLong activity, AtomicLong read) {
            this.schemas = schemas;
            this.activity = activity;
            this.read = read;
        }

        @Override
        public void init(FixedKeyProcessorContext<String, Page> context) {
            this.context = context;
        }

        @Override
        public void process(FixedKeyRecord<String, byte[]> record) {
            activity.set(System.nanoTime());
            try {
                GenericRecord page = schemas.decode(record.value()).value();
                read.incrementAndGet();
                context.forward(record.withValue(new Page(page, record.timestamp())));
            } catch (IOException | RuntimeException e) {
                // The extractor dropped what does not decode; nothing to count.
            }
        }
    }

    /** Says what the record is, as every storefront record does. */
    static final class EventTypeHeader implements FixedKeyProcessor<String, byte[], byte[]> {
        private FixedKeyProcessorContext<String, byte[]> context;

        @Override
        public void init(FixedKeyProcessorContext<String, byte[]> context) {
            this.context = context;
        }

        @Override
        public void process(FixedKeyRecord<String, byte[]> record) {
            record.headers().remove("event-type");
            record.headers().add("event-type", EVENT_TYPE.getBytes(StandardCharsets.UTF_8));
            context.forward(record);
        }
    }

    static int run(Args args) throws Exception {
        String prefix = args.get("topic-prefix", "STOREFRONT_TOPIC_PREFIX", "");
        String bootstrap = args.get("bootstrap-servers", "KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092");
        Schemas schemas = Schemas.load(Path.of(args.get("schemas", Main.defaultSchemas())));
        Duration grace = Duration.ofMillis((long) (Double.parseDouble(args.get("grace", "30")) * 1000));
        Long idleMs = args.has("idle-timeout")
            ? (long) (Double.parseDouble(args.get("idle-timeout", "0")) * 1000) : null;
        String stateDir = args.get("state-dir", null);
        if (stateDir == null) {
            stateDir = Files.createTempDirectory("storefront-streams-").toString();
        }

        Properties props = new Properties();
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, args.get("application-id", prefix + "analytics.pages-per-minute"));
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(StreamsConfig.CLIENT_ID_CONFIG, args.get("client-id", prefix + "analytics.pages-per-minute"));
        props.put(StreamsConfig.STATE_DIR_CONFIG, stateDir);
        props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
        props.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
        props.put("processing.exception.handler.global.enabled", "true");

        AtomicLong activity = new AtomicLong(System.nanoTime());
        AtomicLong read = new AtomicLong();
        AtomicLong emitted = new AtomicLong();
        KafkaStreams streams = new KafkaStreams(topology(prefix, schemas, grace, activity, read, emitted), props);
        streams.setUncaughtExceptionHandler(e -> {
            System.err.println("pages-per-minute failed: " + e);
            return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
        streams.setStateListener((now, before) -> {
            if (now == KafkaStreams.State.RUNNING) {
                activity.set(System.nanoTime());
            }
        });
        Thread closer = new Thread(() -> streams.close(Duration.ofSeconds(30)));
        Runtime.getRuntime().addShutdownHook(closer);
        streams.start();
        System.err.println("pages-per-minute: " + prefix + INPUT + " -> " + prefix + OUTPUT + " (state in " + stateDir + ")");
        while (true) {
            Thread.sleep(200);
            KafkaStreams.State state = streams.state();
            if (state == KafkaStreams.State.ERROR || state == KafkaStreams.State.NOT_RUNNING
                || state == KafkaStreams.State.PENDING_ERROR) {
                return 1;
            }
            if (idleMs != null && state == KafkaStreams.State.RUNNING
                && (System.nanoTime() - activity.get()) / 1_000_000 >= idleMs) {
                break;
            }
        }
        // Idle: close, which commits the last transaction, and leave the
        // group at once (Streams stays a member until its session times out
        // by default), so that a next run takes the partitions right away.
        Runtime.getRuntime().removeShutdownHook(closer);
        streams.close(CloseOptions.timeout(Duration.ofSeconds(30))
            .withGroupMembershipOperation(CloseOptions.GroupMembershipOperation.LEAVE_GROUP));
        System.err.println("pages-per-minute: idle; read " + read.get() + " pages, emitted " + emitted.get() + " minutes");
        return 0;
    }
}
