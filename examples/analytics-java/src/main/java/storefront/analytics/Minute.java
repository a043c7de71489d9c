package storefront.analytics;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

import org.apache.avro.Schema;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericRecord;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.Serializer;

/**
 * What one minute of pages adds up to, as the Streams job keeps it in its
 * window store: counts by outcome, every latency (by millisecond, so the
 * percentiles are exact), and ad impressions by product and by reason.
 */
final class Minute {
    long pages;
    long complete;
    long partial;
    long rejected;
    long timedOut;
    final TreeMap<String, Long> partialMissing = new TreeMap<>();
    /** Latency in ms to the number of pages that took it. */
    final TreeMap<Long, Long> latencies = new TreeMap<>();
    long adImpressions;
    final TreeMap<String, Long> adsByProduct = new TreeMap<>();
    final TreeMap<String, Long> adsByReason = new TreeMap<>();

    /** Adds one page.completed record (any released version, read into the current one). */
    Minute add(GenericRecord page, long completedAtMs) {
        pages++;
        switch (page.get("status").toString()) {
            case "complete" -> complete++;
            case "partial" -> {
                partial++;
                for (Object part : (List<?>) page.get("missing")) {
                    partialMissing.merge(part.toString(), 1L, Long::sum);
                }
            }
            case "rejected" -> rejected++;
            // unavailable: not even the user was resolved by the deadline.
            default -> timedOut++;
        }
        long requestedAt = (Long) ((GenericRecord) page.get("context")).get("requested_at_ms");
        latencies.merge(Math.max(0, completedAtMs - requestedAt), 1L, Long::sum);
        for (Object item : (List<?>) page.get("ads")) {
            GenericRecord ad = (GenericRecord) item;
            adImpressions++;
            adsByProduct.merge(ad.get("product_id").toString(), 1L, Long::sum);
            adsByReason.merge(reasonKind(ad.get("reason").toString()), 1L, Long::sum);
        }
        return this;
    }

    /**
     * An ad's reason is a sentence for the shopper (ads-svc's ranking); it is
     * counted by what kind of reason it opens with.
     */
    static String reasonKind(String reason) {
        if (reason.startsWith("Bought together with")) {
            return "bought_together";
        } else if (reason.startsWith("Best-seller")) {
            return "best_seller";
        } else if (reason.startsWith("Popular with shoppers")) {
            return "popular";
        }
        return "other";
    }

    /** The latency at quantile {@code q} by the nearest-rank method (0 with no page). */
    long percentile(double q) {
        long rank = Math.max(1, (long) Math.ceil(q * pages));
        long seen = 0;
        for (Map.Entry<Long, Long> entry : latencies.entrySet()) {
            seen += entry.getValue();
            if (seen >= rank) {
                return entry.getKey();
            }
        }
        return 0;
    }

    /** The minute as a {@code storefront.pages_per_minute} record. */
    GenericRecord toRecord(Schema schema, long windowStartMs, long windowEndMs) {
        GenericRecord out = new GenericData.Record(schema);
        out.put("window_start_ms", windowStartMs);
        out.put("window_end_ms", windowEndMs);
        out.put("pages", pages);
        out.put("complete", complete);
        out.put("partial", partial);
        out.put("partial_missing", new TreeMap<>(partialMissing));
        out.put("rejected", rejected);
        out.put("timed_out", timedOut);
        out.put("latency_p50_ms", percentile(0.50));
        out.put("latency_p95_ms", percentile(0.95));
        out.put("latency_max_ms", latencies.isEmpty() ? 0L : latencies.lastKey());
        out.put("ad_impressions", adImpressions);
        out.put("ad_impressions_by_product", new TreeMap<>(adsByProduct));
        out.put("ad_impressions_by_reason", new TreeMap<>(adsByReason));
        return out;
    }

    /** The window store's bytes (internal to the job, so no schema needed). */
    static Serde<Minute> serde() {
        Serializer<Minute> serializer = (topic, m) -> {
            try {
                ByteArrayOutputStream bytes = new ByteArrayOutputStream();
                DataOutputStream out = new DataOutputStream(bytes);
                for (long n : new long[] {m.pages, m.complete, m.partial, m.rejected, m.timedOut, m.adImpressions}) {
                    out.writeLong(n);
                }
                writeCounts(out, m.partialMissing);
                out.writeInt(m.latencies.size());
                for (Map.Entry<Long, Long> e : m.latencies.entrySet()) {
                    out.writeLong(e.getKey());
                    out.writeLong(e.getValue());
                }
                writeCounts(out, m.adsByProduct);
                writeCounts(out, m.adsByReason);
                out.flush();
                return bytes.toByteArray();
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        };
        Deserializer<Minute> deserializer = (topic, data) -> {
            if (data == null) {
                return null;
            }
            try {
                DataInputStream in = new DataInputStream(new ByteArrayInputStream(data));
                Minute m = new Minute();
                m.pages = in.readLong();
                m.complete = in.readLong();
                m.partial = in.readLong();
                m.rejected = in.readLong();
                m.timedOut = in.readLong();
                m.adImpressions = in.readLong();
                readCounts(in, m.partialMissing);
                for (int i = in.readInt(); i > 0; i--) {
                    m.latencies.put(in.readLong(), in.readLong());
                }
                readCounts(in, m.adsByProduct);
                readCounts(in, m.adsByReason);
                return m;
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        };
        return Serdes.serdeFrom(serializer, deserializer);
    }

    private static void writeCounts(DataOutputStream out, TreeMap<String, Long> counts) throws IOException {
        out.writeInt(counts.size());
        for (Map.Entry<String, Long> e : counts.entrySet()) {
            out.writeUTF(e.getKey());
            out.writeLong(e.getValue());
        }
    }

    private static void readCounts(DataInputStream in, TreeMap<String, Long> counts) throws IOException {
        for (int i = in.readInt(); i > 0; i--) {
            counts.put(in.readUTF(), in.readLong());
        }
    }
}
