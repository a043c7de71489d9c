package storefront.analytics;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/** {@code --name value} flags, {@code --flag} switches and positional arguments. */
final class Args {
    private final Map<String, String> flags = new HashMap<>();
    private final List<String> positional = new ArrayList<>();

    Args(String[] args, int from, List<String> switches) {
        for (int i = from; i < args.length; i++) {
            String arg = args[i];
            if (arg.startsWith("--")) {
                String name = arg.substring(2);
                if (switches.contains(name)) {
                    flags.put(name, "true");
                } else if (i + 1 < args.length) {
                    flags.put(name, args[++i]);
                } else {
                    throw new IllegalArgumentException(arg + " needs a value");
                }
            } else {
                positional.add(arg);
            }
        }
    }

    String get(String name, String orElse) {
        return flags.getOrDefault(name, orElse);
    }

    /** The flag, else the environment variable, else {@code orElse}. */
    String get(String name, String env, String orElse) {
        String fromEnv = System.getenv(env);
        return flags.getOrDefault(name, fromEnv != null ? fromEnv : orElse);
    }

    boolean has(String name) {
        return flags.containsKey(name);
    }

    Long number(String name) {
        String value = flags.get(name);
        return value == null ? null : Long.parseLong(value);
    }

    List<String> positional() {
        return positional;
    }
}
