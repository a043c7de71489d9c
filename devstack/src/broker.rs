//! The embedded broker: Apache Kafka in KRaft mode (each node a combined
//! broker and controller), run from its Maven Central jars as child
//! processes, one node or a cluster of several on this machine. The jars are
//! fetched once into the cache by `scripts/prepare.sh`; the version is the
//! one `kafka/pom.xml` names.

use std::{
    io::Write as _,
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context};

/// The Maven project that lists the broker's jars: the one place that
/// names the Kafka version.
const POM: &str = include_str!("../../kafka/pom.xml");

/// The oldest Java the broker runs on.
const MIN_JAVA: u32 = 17;

/// How long a node (or a whole cluster) may take to come up on a busy
/// two-core machine; it usually takes a few seconds.
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// How long a node (or every node of a cluster, together) may take to shut
/// down cleanly before it is killed. A node that lost its quorum waits for
/// it for ever, so stopping must not wait for more than this.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a node's watchdog waits, once our end of its stdin closed
/// (this process ended, however), between SIGTERM and SIGKILL.
const WATCHDOG_GRACE: Duration = Duration::from_secs(25);

/// The Apache Kafka version the storefront runs (from `kafka/pom.xml`).
pub fn kafka_version() -> &'static str {
    POM.split_once("<kafka.version>")
        .and_then(|(_, rest)| rest.split_once("</kafka.version>"))
        .map(|(version, _)| version.trim())
        .expect("kafka/pom.xml names <kafka.version>")
}

/// Where the storefront caches what it installs: `$STOREFRONT_CACHE_DIR`,
/// else `$XDG_CACHE_HOME/storefront`, else `~/.cache/storefront`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("STOREFRONT_CACHE_DIR") {
        return dir.into();
    }
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"))
        .join("storefront")
}

/// Where the broker's jars are: `<cache>/kafka-<version>/libs`.
pub fn kafka_libs() -> PathBuf {
    cache_dir()
        .join(format!("kafka-{}", kafka_version()))
        .join("libs")
}

/// What running a node needs: the jars and a Java runtime that can run them.
#[derive(Debug, Clone)]
pub struct Installation {
    libs: PathBuf,
    java: PathBuf,
}

impl Installation {
    /// Finds the cached jars and a Java 17+ runtime, or says what to do.
    pub fn find() -> anyhow::Result<Self> {
        let libs = kafka_libs();
        let version = kafka_version();
        if !libs.join(format!("kafka_2.13-{version}.jar")).is_file() {
            bail!(
                "Apache Kafka {version} is not installed in {}: run scripts/prepare.sh, which fetches it from Maven Central",
                libs.display()
            );
        }
        let java = std::env::var_os("JAVA_HOME")
            .map(|home| PathBuf::from(home).join("bin/java"))
            .unwrap_or_else(|| PathBuf::from("java"));
        check_java(&java)?;
        Ok(Self { libs, java })
    }

    fn java(&self) -> Command {
        let mut command = Command::new(&self.java);
        command.arg("-cp").arg(self.libs.join("*"));
        command
    }
}

fn check_java(java: &Path) -> anyhow::Result<()> {
    let fix = format!(
        "Apache Kafka needs Java {MIN_JAVA} or newer: run scripts/prepare.sh (it installs a JRE), or point JAVA_HOME at one"
    );
    let output = match Command::new(java).arg("-version").output() {
        Ok(output) => output,
        Err(e) => bail!("cannot run {} ({e}). {fix}", java.display()),
    };
    let text = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!(
            "{} -version failed ({}): {}. {fix}",
            java.display(),
            output.status,
            text.trim()
        );
    }
    match java_major(&text) {
        Some(major) if major >= MIN_JAVA => Ok(()),
        Some(major) => bail!("{} is Java {major}. {fix}", java.display()),
        None => bail!(
            "cannot tell which Java {} is from {:?}. {fix}",
            java.display(),
            text.lines().next().unwrap_or_default()
        ),
    }
}

/// The major version in `java -version`'s first line: `"17.0.15"` is 17,
/// `"1.8.0_412"` is 8.
fn java_major(version_output: &str) -> Option<u32> {
    let quoted = version_output.split('"').nth(1)?;
    let mut parts = quoted.split(['.', '-', '+', '_']);
    match parts.next()?.parse().ok()? {
        1 => parts.next()?.parse().ok(),
        major => Some(major),
    }
}

/// Which ports the nodes listen on.
#[derive(Debug, Clone, Copy)]
pub enum Ports {
    /// Free ports chosen at start.
    Free,
    /// Node `i` (from 1) serves clients on `first + 2(i-1)` and its
    /// controller on the port after it: 9092/9093, 9094/9095, ...
    From(u16),
}

/// Written beside the nodes' directories when a cluster is formatted, so a
/// later start knows the directory is ours and how many nodes it has.
const CLUSTER_FILE: &str = "storefront-cluster.properties";

/// A running Apache Kafka cluster of one or more KRaft nodes on this
/// machine, its data in one directory. Stopped when dropped, and also when
/// this process dies: each node's watchdog stops it when its stdin closes.
pub struct Cluster {
    installation: Installation,
    nodes: Vec<Node>,
    voters: String,
}

/// One node: a combined broker and controller.
pub struct Node {
    pub id: u32,
    /// Where clients connect.
    pub addr: SocketAddr,
    controller: SocketAddr,
    dir: PathBuf,
    process: Option<NodeProcess>,
}

struct NodeProcess {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Cluster {
    /// Starts `nodes` nodes with their data under `dir` (formatted on the
    /// first start, reused afterwards) and waits until every broker is in
    /// the cluster's metadata.
    pub fn start(dir: &Path, nodes: u32, ports: Ports) -> anyhow::Result<Self> {
        if nodes == 0 {
            bail!("a cluster needs at least one node");
        }
        let installation = Installation::find()?;
        let dir = std::path::absolute(dir).context("failed to resolve the broker directory")?;
        let cluster_id = claim_directory(&dir, nodes)?;
        let mut cluster_nodes = Vec::new();
        for id in 1..=nodes {
            let (port, controller_port) = match ports {
                Ports::Free => (free_port()?, free_port()?),
                Ports::From(first) => {
                    let port = u16::try_from(u32::from(first) + 2 * (id - 1))
                        .context("the broker ports run past 65535")?;
                    (port, port.checked_add(1).context("no port after {port}")?)
                }
            };
            cluster_nodes.push(Node {
                id,
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                controller: SocketAddr::from(([127, 0, 0, 1], controller_port)),
                dir: dir.join(format!("node-{id}")),
                process: None,
            });
        }
        let voters = cluster_nodes
            .iter()
            .map(|n| format!("{}@{}", n.id, n.controller))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Self {
            installation,
            nodes: cluster_nodes,
            voters,
        };
        for node in &cluster.nodes {
            node.prepare(&cluster.installation, &cluster.voters, nodes, &cluster_id)?;
        }
        // Every node waits for the controller quorum, so all start together.
        for i in 0..cluster.nodes.len() {
            cluster.spawn(i)?;
        }
        cluster.wait_until_complete(START_TIMEOUT)?;
        Ok(cluster)
    }

    /// [`Cluster::start`] off the async threads.
    pub async fn launch(dir: PathBuf, nodes: u32, ports: Ports) -> anyhow::Result<Self> {
        tokio::task::spawn_blocking(move || Self::start(&dir, nodes, ports)).await?
    }

    /// Settings for this cluster's clients: every node to bootstrap from,
    /// and topics as replicated as it allows (three replicas from three nodes).
    pub fn kafka_settings(&self) -> storefront_runtime::KafkaSettings {
        storefront_runtime::KafkaSettings {
            replication_factor: self.nodes.len().min(3) as i32,
            ..storefront_runtime::KafkaSettings::new(self.bootstrap_servers())
        }
    }

    /// The bootstrap list for clients: every node.
    pub fn bootstrap_servers(&self) -> String {
        self.nodes
            .iter()
            .map(|n| n.addr.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The node with this id, or an error naming the ids there are.
    fn index(&self, id: u32) -> anyhow::Result<usize> {
        self.nodes
            .iter()
            .position(|n| n.id == id)
            .with_context(|| format!("no node {id} in a cluster of {}", self.nodes.len()))
    }

    /// Stops one node cleanly (SIGTERM: it hands its leaderships over first).
    pub fn stop_node(&mut self, id: u32) -> anyhow::Result<()> {
        let i = self.index(id)?;
        self.nodes[i].stop();
        Ok(())
    }

    /// Kills one node with SIGKILL: a crash, no clean shutdown.
    pub fn kill_node(&mut self, id: u32) -> anyhow::Result<()> {
        let i = self.index(id)?;
        if let Some(pid) = self.nodes[i].pid() {
            signal(pid, "-KILL")?;
        }
        self.nodes[i].stop();
        Ok(())
    }

    /// Sends a signal (`-STOP`, `-CONT`) to one node's process.
    pub fn signal_node(&self, id: u32, signal_name: &str) -> anyhow::Result<()> {
        let i = self.index(id)?;
        let pid = self.nodes[i]
            .pid()
            .with_context(|| format!("node {id} is not running"))?;
        signal(pid, signal_name)
    }

    /// Starts a stopped node again and waits until the cluster lists every broker.
    pub fn start_node(&mut self, id: u32) -> anyhow::Result<()> {
        let i = self.index(id)?;
        self.spawn(i)?;
        self.wait_until_complete(START_TIMEOUT)
    }

    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let node = &mut self.nodes[i];
        for addr in [node.addr, node.controller] {
            if TcpListener::bind(addr).is_err() {
                bail!(
                    "port {} is already in use: stop what listens there (`ss -ltnp 'sport = :{}'` shows it) or choose other broker ports",
                    addr.port(),
                    addr.port()
                );
            }
        }
        let mut command = self.installation.java();
        // The settings of Kafka's own kafka-server-start.sh, with a small heap.
        command
            .args(["-Xms256m", "-Xmx512m", "-server", "-XX:+UseG1GC"])
            .args([
                "-XX:MaxGCPauseMillis=20",
                "-XX:InitiatingHeapOccupancyPercent=35",
            ])
            .args([
                "-XX:+ExplicitGCInvokesConcurrent",
                "-Djava.awt.headless=true",
            ])
            .arg(format!(
                "-Dlog4j2.configurationFile={}",
                node.dir.join("log4j2.properties").display()
            ))
            .arg(format!(
                "-Dkafka.logs.dir={}",
                node.dir.join("logs").display()
            ))
            .arg("kafka.Kafka")
            .arg(node.dir.join("server.properties"));
        let stdout = std::fs::File::create(node.dir.join("stdout.log"))
            .with_context(|| format!("failed to create {}", node.dir.display()))?;
        node.process = Some(NodeProcess::spawn(command, stdout)?);
        Ok(())
    }

    /// Waits until the metadata lists every node's broker, failing early
    /// with the end of its log when a node exits.
    fn wait_until_complete(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let started = Instant::now();
        while started.elapsed() < timeout {
            for node in &mut self.nodes {
                node.check_running()?;
            }
            if let Ok(metadata) = self.metadata(None) {
                let running = self.nodes.iter().filter(|n| n.process.is_some()).count();
                if metadata.brokers().len() >= running {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let logs: Vec<String> = self
            .nodes
            .iter()
            .map(|n| n.dir.join("server.log").display().to_string())
            .collect();
        bail!(
            "Kafka did not come up on {} within {timeout:?}: see {}",
            self.bootstrap_servers(),
            logs.join(", ")
        )
    }

    /// The node that leads `partition` of `topic`.
    pub fn leader_of(&self, topic: &str, partition: i32) -> anyhow::Result<u32> {
        let metadata = self.metadata(Some(topic))?;
        let leader = metadata
            .topics()
            .iter()
            .flat_map(|t| t.partitions())
            .find(|p| p.id() == partition)
            .map(|p| p.leader())
            .with_context(|| format!("no partition {partition} of {topic} in the metadata"))?;
        u32::try_from(leader).with_context(|| format!("{topic}[{partition}] has no leader"))
    }

    /// Waits until every partition of every topic has all its replicas in
    /// sync, as a rolling restart must before it stops the next node.
    pub fn wait_until_in_sync(&self, timeout: Duration) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            let lagging = self.metadata(None).map(|metadata| {
                metadata
                    .topics()
                    .iter()
                    .flat_map(|t| t.partitions())
                    .filter(|p| p.isr().len() < p.replicas().len() || p.leader() < 0)
                    .count()
            });
            if let Ok(0) = lagging {
                return Ok(());
            }
            if started.elapsed() > timeout {
                bail!("partitions still under-replicated after {timeout:?}: {lagging:?}");
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn metadata(&self, topic: Option<&str>) -> anyhow::Result<rdkafka::metadata::Metadata> {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let client: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap_servers())
            .set("log_level", "0")
            .create()?;
        Ok(client.fetch_metadata(topic, Duration::from_secs(5))?)
    }

    /// Stops every node (together: a lone last node would wait for a
    /// quorum that is gone) and waits for them to exit.
    pub fn stop(mut self) {
        self.shutdown();
    }

    /// SIGTERM to every node at once (their watchdogs send it when their
    /// stdin closes), then one deadline for all of them, then SIGKILL.
    fn shutdown(&mut self) {
        for node in &mut self.nodes {
            if let Some(process) = &mut node.process {
                process.stdin.take();
            }
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        for node in &mut self.nodes {
            node.stop_by(deadline);
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Node {
    /// The broker's own process (the java child of its watchdog shell).
    pub fn pid(&self) -> Option<u32> {
        let shell = self.process.as_ref()?.child.id();
        let children =
            std::fs::read_to_string(format!("/proc/{shell}/task/{shell}/children")).ok()?;
        children
            .split_whitespace()
            .filter_map(|pid| pid.parse().ok())
            .find(|pid: &u32| {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|name| name.trim() == "java")
            })
    }

    /// This node's server log.
    pub fn log(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    /// Writes the node's settings and formats its storage on the first start.
    fn prepare(
        &self,
        installation: &Installation,
        voters: &str,
        nodes: u32,
        cluster_id: &str,
    ) -> anyhow::Result<()> {
        let data = self.dir.join("data");
        std::fs::create_dir_all(&data)
            .with_context(|| format!("failed to create {}", data.display()))?;
        std::fs::write(
            self.dir.join("server.properties"),
            self.properties(voters, nodes, &data),
        )?;
        std::fs::write(
            self.dir.join("log4j2.properties"),
            log4j2_properties(&self.log()),
        )?;
        match read_properties(&data.join("meta.properties"), "cluster.id") {
            Some(id) if id == cluster_id => return Ok(()),
            Some(id) => bail!(
                "{} belongs to another Kafka cluster ({id}, not {cluster_id}): move the directory away or use another --data-dir",
                data.display()
            ),
            None if std::fs::read_dir(&data)?.next().is_some() => bail!(
                "{} holds files but no Kafka meta.properties (a foreign or damaged directory): move it away or use another --data-dir; nothing was deleted",
                data.display()
            ),
            None => {}
        }
        let output = installation
            .java()
            .args(["kafka.tools.StorageTool", "format"])
            .arg(format!("--cluster-id={cluster_id}"))
            .arg("-c")
            .arg(self.dir.join("server.properties"))
            .output()
            .context("failed to run Kafka's storage tool")?;
        if !output.status.success() {
            bail!(
                "formatting {} failed: {}{}",
                data.display(),
                String::from_utf8_lossy(&output.stdout).trim(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(())
    }

    fn properties(&self, voters: &str, nodes: u32, data: &Path) -> String {
        // Internal topics as replicated as the cluster allows; with three
        // nodes or more a write survives one lost broker.
        let replicas = nodes.min(3);
        let min_isr = if replicas >= 3 { 2 } else { 1 };
        let mut text = format!(
            "process.roles=broker,controller
node.id={id}
controller.quorum.voters={voters}
listeners=PLAINTEXT://{addr},CONTROLLER://{controller}
advertised.listeners=PLAINTEXT://{addr}
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs={data}
default.replication.factor={replicas}
min.insync.replicas={min_isr}
offsets.topic.replication.factor={replicas}
transaction.state.log.replication.factor={replicas}
transaction.state.log.min.isr={min_isr}
share.coordinator.state.topic.replication.factor={replicas}
share.coordinator.state.topic.min.isr={min_isr}
# One machine: fewer partitions for the internal topics than the 50 a
# production cluster wants, so the first group and transaction start fast.
offsets.topic.num.partitions=10
transaction.state.log.num.partitions=10
group.initial.rebalance.delay.ms=0
# Topics are created by the services and the seed, with their settings;
# a client asking for a missing topic must not create it with defaults.
auto.create.topics.enable=false
# The log cleaner allocates 128 MiB by default: too much in a 512 MiB heap.
log.cleaner.dedupe.buffer.size=16777216
# A transaction past its timeout is aborted within a second (default: 10 s).
# Its producer may be stuck on a node that is gone, and until the abort the
# transaction holds every reader of its partitions back (read_committed).
transaction.abort.timed.out.transaction.cleanup.interval.ms=1000
",
            id = self.id,
            addr = self.addr,
            controller = self.controller,
            data = data.display(),
        );
        if nodes > 1 {
            // How soon the cluster gives up on a node that stopped answering
            // (crashed, frozen, cut off), so that writes and coordinators
            // move on within seconds (docs/reliability.md): a controller
            // that went silent is replaced after 1.5 s (default 2 s), a
            // broker fenced after 3 s without a heartbeat (default 9 s), and
            // a follower that stopped fetching leaves the in-sync replicas
            // after 3 s (default 30 s; until then an acks=all write waits
            // for it).
            text.push_str(
                "controller.quorum.fetch.timeout.ms=1500
broker.session.timeout.ms=3000
broker.heartbeat.interval.ms=750
replica.lag.time.max.ms=3000
",
            );
        }
        text
    }

    fn check_running(&mut self) -> anyhow::Result<()> {
        let Some(process) = &mut self.process else {
            return Ok(());
        };
        if let Some(status) = process.child.try_wait()? {
            self.process = None;
            let log = std::fs::read_to_string(self.log()).unwrap_or_default();
            let stdout = std::fs::read_to_string(self.dir.join("stdout.log")).unwrap_or_default();
            bail!(
                "Kafka node {} exited at start ({status}); the end of {}:\n{}\n{}",
                self.id,
                self.log().display(),
                last_lines(&log, 15),
                last_lines(&stdout, 10)
            );
        }
        Ok(())
    }

    fn stop(&mut self) {
        self.stop_by(Instant::now() + STOP_TIMEOUT);
    }

    /// SIGTERM (through its watchdog), then SIGKILL if it still runs at `deadline`.
    fn stop_by(&mut self, deadline: Instant) {
        let pid = self.pid();
        let Some(mut process) = self.process.take() else {
            return;
        };
        process.stdin.take();
        while Instant::now() < deadline {
            if let Ok(Some(_)) = process.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Some(pid) = pid {
            let _ = signal(pid, "-KILL");
        }
        let _ = process.child.kill();
        let _ = process.child.wait();
    }
}

impl NodeProcess {
    /// Starts `command` under a watchdog shell that stops it when our end of
    /// its stdin closes, which also happens when this process dies, so a
    /// node is never left orphaned: SIGTERM, and SIGKILL if it still runs
    /// after `WATCHDOG_GRACE` (a node without its quorum never exits).
    fn spawn(command: Command, log: std::fs::File) -> anyhow::Result<Self> {
        Self::spawn_with_grace(command, log, WATCHDOG_GRACE)
    }

    fn spawn_with_grace(
        command: Command,
        log: std::fs::File,
        grace: Duration,
    ) -> anyhow::Result<Self> {
        // (A background list reads /dev/null unless told otherwise: hence fd 3.)
        let checks = (grace.as_millis() / 500).max(1);
        let watchdog = format!(
            r#"exec 3<&0; "$0" "$@" </dev/null & node=$!; (cat <&3 >/dev/null; kill -TERM $node 2>/dev/null; i=0; while kill -0 $node 2>/dev/null && [ $i -lt {checks} ]; do sleep 0.5; i=$((i+1)); done; kill -KILL $node 2>/dev/null) & wait $node"#
        );
        let mut shell = Command::new("sh");
        shell
            .args(["-c", watchdog.as_str()])
            .arg(command.get_program())
            .args(command.get_args())
            .stdin(Stdio::piped())
            .stdout(log.try_clone()?)
            .stderr(log);
        // Its own process group: a terminal's Ctrl-C reaches us first, so the
        // services can commit before the broker stops.
        std::os::unix::process::CommandExt::process_group(&mut shell, 0);
        let mut child = shell.spawn().context("failed to start a Kafka node")?;
        let stdin = child.stdin.take();
        Ok(Self { child, stdin })
    }
}

/// Makes `dir` this cluster's home, or checks that it already is, and
/// returns the cluster id. Refuses a directory that holds something else
/// or a cluster of another size, deleting nothing.
fn claim_directory(dir: &Path, nodes: u32) -> anyhow::Result<String> {
    let marker = dir.join(CLUSTER_FILE);
    if let Some(id) = read_properties(&marker, "cluster.id") {
        let formatted: Option<u32> = read_properties(&marker, "nodes").and_then(|n| n.parse().ok());
        if formatted != Some(nodes) {
            bail!(
                "{} holds a Kafka cluster of {} node(s), not {nodes}: start it with --brokers {} or use another --data-dir",
                dir.display(),
                formatted.map_or("an unknown number of".to_owned(), |n| n.to_string()),
                formatted.map_or("N".to_owned(), |n| n.to_string()),
            );
        }
        return Ok(id);
    }
    if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        bail!(
            "{} is not empty and has no {CLUSTER_FILE}: it is not a broker directory of the storefront; move it away or use another --data-dir (nothing was deleted)",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display()))?;
    let id = random_cluster_id();
    let mut file = std::fs::File::create(&marker)?;
    writeln!(
        file,
        "# Written by storefront when it formatted this cluster.\ncluster.id={id}\nnodes={nodes}\nkafka.version={}",
        kafka_version()
    )?;
    Ok(id)
}

/// A Kafka cluster id: 16 random bytes in URL-safe base64 without padding.
fn random_cluster_id() -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(uuid::Uuid::new_v4().as_bytes())
}

fn read_properties(file: &Path, key: &str) -> Option<String> {
    std::fs::read_to_string(file)
        .ok()?
        .lines()
        .filter_map(|line| line.split_once('='))
        .find(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim().to_owned())
}

fn log4j2_properties(log: &Path) -> String {
    format!(
        "appender.file.type=File
appender.file.name=file
appender.file.fileName={}
appender.file.layout.type=PatternLayout
appender.file.layout.pattern=[%d] %p %m (%c)%n
rootLogger.level=WARN
rootLogger.appenderRef.file.ref=file
# Keeps the \"Kafka Server started\" line.
logger.server.name=kafka.server.KafkaRaftServer
logger.server.level=INFO
# When a group or transaction coordinator is elected, loads and resigns:
# the evidence when a client waits on one after a fault.
logger.coordinator.name=org.apache.kafka.coordinator
logger.coordinator.level=INFO
logger.transactions.name=kafka.coordinator.transaction
logger.transactions.level=INFO
",
        log.display()
    )
}

fn signal(pid: u32, signal: &str) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .arg(signal)
        .arg(pid.to_string())
        .status()
        .context("failed to run kill")?;
    if !status.success() {
        bail!("kill {signal} {pid} failed ({status})");
    }
    Ok(())
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A free TCP port on the loopback interface.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kafka_version_is_read_from_the_pom() {
        let version = kafka_version();
        assert!(
            version.split('.').count() == 3 && version.split('.').all(|p| p.parse::<u32>().is_ok()),
            "{version}"
        );
    }

    /// Whatever ends this process, its nodes end. A node that lost its
    /// quorum does not exit after SIGTERM; a command that ignores SIGTERM
    /// stands for it here.
    #[test]
    fn a_node_that_does_not_stop_on_sigterm_is_killed_once_its_parent_is_gone() {
        let mut stubborn = Command::new("sh");
        stubborn.args(["-c", "trap '' TERM; while :; do sleep 0.2; done"]);
        let log = tempfile::tempfile().unwrap();
        let mut process =
            NodeProcess::spawn_with_grace(stubborn, log, Duration::from_secs(1)).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        assert!(process.child.try_wait().unwrap().is_none(), "it runs");
        // What the death of this process does: our end of the pipe closes.
        process.stdin.take();
        let gave_up_at = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = process.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > gave_up_at {
                let _ = process.child.kill();
                panic!("the watchdog did not end a node that ignores SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        assert!(!status.success(), "killed, not ended by itself: {status:?}");
    }

    #[test]
    fn java_versions_are_read_in_both_numbering_schemes() {
        assert_eq!(
            java_major("openjdk version \"17.0.15\" 2025-04-15\nOpenJDK Runtime"),
            Some(17)
        );
        assert_eq!(java_major("java version \"1.8.0_412\""), Some(8));
        assert_eq!(java_major("openjdk version \"25\" 2025-09-16"), Some(25));
        assert_eq!(java_major("openjdk version \"21-ea\""), Some(21));
        assert_eq!(java_major("no version here"), None);
    }

    #[test]
    fn a_missing_java_is_named_with_what_to_do() {
        let error = check_java(Path::new("/nonexistent/bin/java"))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("cannot run /nonexistent/bin/java"),
            "{error}"
        );
        assert!(error.contains("Java 17 or newer"), "{error}");
        assert!(error.contains("scripts/prepare.sh"), "{error}");
    }

    #[test]
    fn a_port_in_use_is_refused_with_what_to_do() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let dir = std::env::temp_dir().join(format!("storefront-port-{}", rand::random::<u32>()));
        let error = Cluster::start(&dir, 1, Ports::From(port))
            .err()
            .expect("the port is taken")
            .to_string();
        assert!(
            error.contains(&format!("port {port} is already in use")),
            "{error}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_directory_with_foreign_files_is_refused_and_left_alone() {
        let dir = std::env::temp_dir().join(format!("storefront-claim-{}", rand::random::<u32>()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("precious.txt"), "keep me").unwrap();
        let error = claim_directory(&dir, 1).unwrap_err().to_string();
        assert!(error.contains("not a broker directory"), "{error}");
        assert!(dir.join("precious.txt").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_cluster_directory_is_claimed_once_and_refuses_another_size() {
        let dir = std::env::temp_dir().join(format!("storefront-claim-{}", rand::random::<u32>()));
        let id = claim_directory(&dir, 1).unwrap();
        assert_eq!(id.len(), 22);
        assert_eq!(claim_directory(&dir, 1).unwrap(), id);
        let error = claim_directory(&dir, 3).unwrap_err().to_string();
        assert!(error.contains("--brokers 1"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
