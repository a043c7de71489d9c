package storefront.analytics;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

import org.apache.avro.Schema;
import org.apache.avro.SchemaNormalization;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.message.BinaryMessageDecoder;
import org.apache.avro.message.BinaryMessageEncoder;

/**
 * Every schema of the storefront, read from the {@code .avsc} files of
 * {@code schemas/avro/} (the current versions) and {@code schemas/avro/previous/}
 * (released earlier versions), and one Avro {@link BinaryMessageDecoder} per
 * record type.
 *
 * <p>Each decoder reads into the current schema of its type and knows every
 * released version as a writer schema ({@code addSchema}): Avro's reference
 * implementation finds the writer by the fingerprint in the single-object
 * header ({@code C3 01} + the 8-byte little-endian CRC-64-AVRO of the writer's
 * Parsing Canonical Form) and resolves its datum into today's shape, fields
 * added since taking their defaults.
 */
public final class Schemas {
    /** The two marker bytes of Avro single-object encoding. */
    static final byte[] MAGIC = {(byte) 0xC3, (byte) 0x01};
    static final int HEADER_LEN = 10;

    /** One version of one schema, as read from its file. */
    public record Version(String file, Schema schema, long fingerprint, boolean current) {}

    private final List<Version> versions;
    private final Map<Long, Version> byFingerprint = new HashMap<>();
    private final Map<String, BinaryMessageDecoder<GenericRecord>> decoders = new HashMap<>();
    private final Map<String, Schema> current = new HashMap<>();

    private Schemas(List<Version> versions) {
        this.versions = versions;
        for (Version v : versions) {
            Version twin = byFingerprint.put(v.fingerprint(), v);
            if (twin != null) {
                throw new IllegalArgumentException(v.file() + " and " + twin.file() + " are the same schema");
            }
            if (v.current()) {
                current.put(v.schema().getFullName(), v.schema());
            }
        }
        for (Version v : versions) {
            Schema reader = current.get(v.schema().getFullName());
            if (reader == null) {
                throw new IllegalArgumentException(v.file() + ": no current schema named " + v.schema().getFullName());
            }
            BinaryMessageDecoder<GenericRecord> decoder = decoders.computeIfAbsent(
                reader.getFullName(), name -> new BinaryMessageDecoder<>(GenericData.get(), reader));
            if (!v.current()) {
                decoder.addSchema(v.schema());
            }
        }
    }

    /** The schemas under {@code dir} (schemas/avro) and {@code dir/previous}. */
    public static Schemas load(Path dir) {
        List<Version> versions = new ArrayList<>();
        versions.addAll(read(dir, true));
        Path previous = dir.resolve("previous");
        if (Files.isDirectory(previous)) {
            versions.addAll(read(previous, false));
        }
        if (versions.isEmpty()) {
            throw new IllegalArgumentException("no .avsc file in " + dir);
        }
        return new Schemas(versions);
    }

    private static List<Version> read(Path dir, boolean current) {
        try (Stream<Path> files = Files.list(dir)) {
            List<Version> out = new ArrayList<>();
            for (Path path : files.filter(p -> p.toString().endsWith(".avsc")).sorted().toList()) {
                out.add(version(path, (current ? "" : "previous/") + path.getFileName(), current));
            }
            return out;
        } catch (IOException e) {
            throw new UncheckedIOException("read " + dir, e);
        }
    }

    /** One file, parsed on its own (each file defines its nested types anew). */
    static Version version(Path path, String file, boolean current) throws IOException {
        Schema schema = new Schema.Parser().parse(path.toFile());
        return new Version(file, schema, SchemaNormalization.parsingFingerprint64(schema), current);
    }

    public List<Version> versions() {
        return versions;
    }

    /** The current schema of a record type, e.g. {@code storefront.page_completed}. */
    public Schema current(String fullName) {
        Schema schema = current.get(fullName);
        if (schema == null) {
            throw new IllegalArgumentException("no schema named " + fullName);
        }
        return schema;
    }

    /** A decoded record and the file of the schema that wrote it. */
    public record Decoded(GenericRecord value, String writerFile) {}

    /**
     * Decodes a single-object encoded payload: the fingerprint names the
     * writer (and so the record type), Avro's decoder does the rest.
     */
    public Decoded decode(byte[] payload) throws IOException {
        if (payload == null || payload.length < HEADER_LEN || payload[0] != MAGIC[0] || payload[1] != MAGIC[1]) {
            throw new IOException("not Avro single-object encoded (no C3 01 marker)");
        }
        long fingerprint = ByteBuffer.wrap(payload, 2, 8).order(ByteOrder.LITTLE_ENDIAN).getLong();
        Version writer = byFingerprint.get(fingerprint);
        if (writer == null) {
            throw new IOException("unknown schema fingerprint " + hex(payload, 2, HEADER_LEN));
        }
        BinaryMessageDecoder<GenericRecord> decoder = decoders.get(writer.schema().getFullName());
        return new Decoded(decoder.decode(payload), writer.file());
    }

    /** An encoder of the current schema of a record type. */
    public BinaryMessageEncoder<GenericRecord> encoder(String fullName) {
        return new BinaryMessageEncoder<>(GenericData.get(), current(fullName));
    }

    static String hex(byte[] bytes, int from, int to) {
        StringBuilder out = new StringBuilder();
        for (int i = from; i < to; i++) {
            out.append(String.format("%02x", bytes[i]));
        }
        return out.toString();
    }

    /** The 8 fingerprint bytes as they follow C3 01 in a record, in hex. */
    static String headerHex(long fingerprint) {
        byte[] bytes = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(fingerprint).array();
        return hex(bytes, 0, 8);
    }
}
