package storefront.analytics;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

/**
 * {@code java -jar target/storefront-analytics.jar COMMAND [flags]}:
 * <ul>
 * <li>{@code tap}: print every record of every topic as a JSON line ({@link Tap});
 * <li>{@code pages-per-minute}: the Kafka Streams job ({@link PagesPerMinute});
 * <li>{@code fingerprints [DIR]}: each schema file with Java's
 *     {@code SchemaNormalization.parsingFingerprint64}, for the schema tests.
 * </ul>
 */
public final class Main {
    private Main() {}

    public static void main(String[] argv) throws Exception {
        if (argv.length == 0 || argv[0].equals("--help") || argv[0].equals("-h")) {
            System.err.println(USAGE);
            System.exit(argv.length == 0 ? 2 : 0);
        }
        Args args = new Args(argv, 1, List.of());
        int status = switch (argv[0]) {
            case "tap" -> Tap.run(args);
            case "pages-per-minute" -> PagesPerMinute.run(args);
            case "fingerprints" -> fingerprints(args);
            default -> {
                System.err.println("unknown command " + argv[0] + "\n" + USAGE);
                yield 2;
            }
        };
        System.exit(status);
    }

    static final String USAGE = """
        usage: java -jar target/storefront-analytics.jar COMMAND [flags]
          tap               every record of every topic as one JSON line
                            --bootstrap-servers (KAFKA_BOOTSTRAP_SERVERS, 127.0.0.1:9092)
                            --topic-prefix (STOREFRONT_TOPIC_PREFIX) --schemas DIR
                            --group (<prefix>analytics.java-tap) --client-id (<prefix>analytics)
                            --max-records N --idle-timeout SECONDS
          pages-per-minute  the Kafka Streams job: page.completed -> analytics.pages-per-minute
                            --bootstrap-servers --topic-prefix --schemas DIR --grace SECONDS (30)
                            --application-id (<prefix>analytics.pages-per-minute) --state-dir DIR
                            --idle-timeout SECONDS (stop when nothing was read for that long)
          fingerprints      each .avsc under DIR (schemas/avro) and DIR/previous: file,
                            SchemaNormalization.parsingFingerprint64, the 8 header bytes in hex
        """;

    /** schemas/avro of the repository: from the working directory, else beside the jar. */
    static String defaultSchemas() {
        Path here = Path.of("schemas/avro");
        if (Files.isDirectory(here)) {
            return here.toString();
        }
        try {
            Path jar = Path.of(Main.class.getProtectionDomain().getCodeSource().getLocation().toURI());
            // examples/analytics-java/target/storefront-analytics.jar
            Path repo = jar.getParent().getParent().getParent().getParent();
            return repo.resolve("schemas/avro").toString();
        } catch (Exception e) {
            return here.toString();
        }
    }

    private static int fingerprints(Args args) {
        String dir = args.positional().isEmpty() ? defaultSchemas() : args.positional().get(0);
        for (Schemas.Version v : Schemas.load(Path.of(dir)).versions()) {
            System.out.println(v.file() + "\t" + v.fingerprint() + "\t" + Schemas.headerHex(v.fingerprint()));
        }
        return 0;
    }
}
