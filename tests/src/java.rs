//! The Java analytics example (`examples/analytics-java`, Maven): built once
//! per test process, then run with the JDK. Its dependencies are in Maven's
//! local repository once `scripts/prepare.sh --test` ran, so the build is
//! offline (`-o`); without them it goes online and shows what it fetches.
//! Shared by file with the schema tests, which cannot depend on this crate.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

/// `examples/analytics-java`.
pub fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/analytics-java")
}

/// `$JAVA_HOME/bin/java`, else `java`.
pub fn java() -> PathBuf {
    match std::env::var_os("JAVA_HOME") {
        Some(home) => PathBuf::from(home).join("bin/java"),
        None => "java".into(),
    }
}

/// The example's jar (its dependencies in `target/lib/`, named by its
/// manifest), built from the current sources the first time it is asked for.
pub fn analytics_jar() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let dir = example_dir();
            let maven = |offline: bool| {
                let mut command = Command::new("mvn");
                command.current_dir(&dir).args(["-B", "-q"]);
                if offline {
                    command.arg("-o");
                }
                command
                    .arg("package")
                    .status()
                    .expect("Maven runs (scripts/prepare.sh installs it)")
            };
            if !maven(true).success() {
                eprintln!("offline build failed; building with Maven Central");
                assert!(
                    maven(false).success(),
                    "the Java example builds (mvn package in {})",
                    dir.display()
                );
            }
            dir.join("target/storefront-analytics.jar")
        })
        .clone()
}

/// `java -jar storefront-analytics.jar args...`, ready to add to and run.
pub fn analytics(args: &[&str]) -> Command {
    let mut command = Command::new(java());
    command.arg("-jar").arg(analytics_jar()).args(args);
    command
}
