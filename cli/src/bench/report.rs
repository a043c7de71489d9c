//! The benchmark's results as Markdown tables, the targets checked against
//! them, and the capacity curve as an SVG plot.

use std::fmt::Write;

use serde::Serialize;

use super::{floor::Floor, load::Summary, Design, Scenario};

/// One design under one scenario.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    pub design: Design,
    pub scenario: Scenario,
    pub rate: f64,
    pub summary: Summary,
}

/// One process's use of the machine during a design's healthy run.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessUse {
    pub design: Design,
    pub process: String,
    /// Share of one core over the healthy run, in percent.
    pub cpu_percent: f64,
    /// Highest resident memory over the design's whole run.
    pub peak_rss_mib: f64,
}

/// One process's CPU while its design served nothing.
#[derive(Debug, Clone, Serialize)]
pub struct IdleUse {
    pub design: Design,
    pub process: String,
    /// Share of one core, in percent.
    pub cpu_percent: f64,
}

/// A process killed and started again.
#[derive(Debug, Clone, Serialize)]
pub struct Restart {
    pub design: Design,
    pub process: String,
    /// From the restarted process's start until its `/readyz` answered 200.
    pub ready_ms: f64,
}

/// How a design came back from the burst.
#[derive(Debug, Clone, Serialize)]
pub struct BurstRecovery {
    pub design: Design,
    /// When the burst ended, from the start of the scenario.
    pub burst_end_secs: f64,
    /// From the burst's end until every later second's p99 was under
    /// 100 ms; `None` if it was not by the end of the scenario.
    pub settled_after_secs: Option<f64>,
}

/// One design at one rate of the capacity curve.
#[derive(Debug, Clone, Serialize)]
pub struct CapacityPoint {
    pub design: Design,
    pub rate: f64,
    pub summary: Summary,
}

/// The choreography under one tuning of its Kafka clients.
#[derive(Debug, Clone, Serialize)]
pub struct TuningResult {
    pub setting: String,
    pub rate: f64,
    pub summary: Summary,
    pub broker_cpu_percent: f64,
}

/// What the analytics tap read while the load ran beside it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TapRead {
    pub records: u64,
    pub mib_per_sec: f64,
    pub records_per_sec: f64,
    /// Whole reads of every topic it finished.
    pub passes: u64,
    /// The tap process's CPU, share of one core.
    pub cpu_percent: f64,
}

impl TapRead {
    /// From two progress lines `wall` apart and the CPU ticks the tap used between them.
    pub fn between(
        before: &crate::analytics_tap::TapProgress,
        after: &crate::analytics_tap::TapProgress,
        wall: std::time::Duration,
        cpu_ticks: u64,
    ) -> Self {
        let secs = wall.as_secs_f64().max(1e-9);
        let records = after.records.saturating_sub(before.records);
        let bytes = after.bytes.saturating_sub(before.bytes);
        Self {
            records,
            mib_per_sec: bytes as f64 / 1024.0 / 1024.0 / secs,
            records_per_sec: records as f64 / secs,
            passes: after.passes.saturating_sub(before.passes),
            cpu_percent: crate::processes::ticks_to_duration(cpu_ticks).as_secs_f64() / secs
                * 100.0,
        }
    }
}

/// One run of the tap scenario.
#[derive(Debug, Clone, Serialize)]
pub struct TapRun {
    pub summary: Summary,
    /// The broker's CPU over the run, share of one core.
    pub broker_cpu_percent: f64,
    /// What the tap read meanwhile; none when no tap ran.
    pub tap: Option<TapRead>,
}

/// The choreography's page latency without and with an analytics tap.
#[derive(Debug, Clone, Serialize)]
pub struct TapResult {
    pub rate: f64,
    pub duration_secs: f64,
    pub without: TapRun,
    pub with_tap: TapRun,
    /// The same with the tap's client id under a quota.
    pub quota: Option<QuotaRun>,
    /// The tap, no quota, at idle CPU priority (`chrt --idle`): as if it
    /// ran on a machine of its own, so only its cost to the broker is left.
    pub idle_priority: TapRun,
    /// Without a tap again, after it stopped: how far two runs of the same thing differ.
    pub without_after: TapRun,
}

impl TapResult {
    /// How much `run` raised the page p99 over the first run without a tap, in percent.
    pub fn p99_rise_percent(&self, run: &TapRun) -> f64 {
        (run.summary.p99_ms / self.without.summary.p99_ms - 1.0) * 100.0
    }
}

/// The tap scenario's run with the tap under a client quota.
#[derive(Debug, Clone, Serialize)]
pub struct QuotaRun {
    /// Fetched bytes per second and broker.
    pub consumer_byte_rate: u64,
    pub run: TapRun,
}

/// Everything one bench run measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BenchReport {
    pub command: String,
    pub machine: String,
    pub deadline_ms: u64,
    pub floor: Option<Floor>,
    pub scenarios: Vec<ScenarioResult>,
    pub processes: Vec<ProcessUse>,
    /// The choreography's processes while idle, and for how long.
    pub idle: Vec<IdleUse>,
    pub idle_secs: f64,
    pub capacity: Vec<CapacityPoint>,
    pub restarts: Vec<Restart>,
    pub burst_recoveries: Vec<BurstRecovery>,
    pub tuning: Vec<TuningResult>,
    /// Tuning runs that could not be measured, and why.
    pub tuning_failures: Vec<String>,
    /// Login latency through the choreography (argon2id bound), p50 and p99 ms.
    pub logins: Option<Summary>,
    /// The tap scenario: page latency without and with an analytics consumer.
    pub taps: Vec<TapResult>,
}

/// p99 at or under which a rate counts as sustained.
pub const SUSTAINED_P99_MS: f64 = 100.0;

impl BenchReport {
    /// The highest rate `design` sustained: p99 under [`SUSTAINED_P99_MS`], nothing lost, under 1 % errors.
    pub fn capacity_of(&self, design: Design) -> Option<f64> {
        self.capacity
            .iter()
            .filter(|p| p.design == design && sustained(&p.summary))
            .map(|p| p.rate)
            .fold(None, |best, rate| {
                Some(best.map_or(rate, |b: f64| b.max(rate)))
            })
    }

    fn result(&self, design: Design, scenario: Scenario) -> Option<&ScenarioResult> {
        self.scenarios
            .iter()
            .find(|r| r.design == design && r.scenario == scenario)
    }

    /// The whole report as Markdown.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Command: `{}`\n\nMachine: {}\n",
            self.command, self.machine
        );
        if let Some(floor) = &self.floor {
            let _ = writeln!(
                out,
                "**Floor** (broker, one hop, producer `send` to consumer with the services' settings, {} records at {}/s): \
                 p50 {:.1} ms, p99 {:.1} ms per hop; times {} hops on the critical path: p50 {:.1} ms, p99 {:.1} ms.\n",
                floor.records,
                floor.rate,
                floor.hop_p50_ms,
                floor.hop_p99_ms,
                super::floor::CRITICAL_PATH_HOPS,
                floor.floor_p50_ms,
                floor.floor_p99_ms
            );
        }
        out.push_str("**Scenarios** (latency from the intended send time, in ms; page deadline ");
        let _ = writeln!(out, "{} ms)\n", self.deadline_ms);
        out.push_str("| design | scenario | rate/s | sent | p50 | p90 | p99 | p99.9 | max | req/s | complete | partial | errors | lost |\n");
        out.push_str("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
        for r in &self.scenarios {
            let s = &r.summary;
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0} | {} | {} | {} | {} |",
                r.design, r.scenario, r.rate, s.sent, s.p50_ms, s.p90_ms, s.p99_ms, s.p999_ms, s.max_ms,
                s.throughput, s.complete, s.partial, errors(s), s.lost
            );
        }
        if let Some(logins) = &self.logins {
            let _ = writeln!(
                out,
                "\nLogins through the choreography (argon2id, one at a time per user): {} sent, p50 {:.1} ms, p99 {:.1} ms, {} errors.",
                logins.sent, logins.p50_ms, logins.p99_ms, logins.errors
            );
        }
        for recovery in &self.burst_recoveries {
            let _ = writeln!(
                out,
                "\n{} after the burst (it ended {:.1} s in): p99 under {SUSTAINED_P99_MS} ms in every later second {}.",
                recovery.design,
                recovery.burst_end_secs,
                match recovery.settled_after_secs {
                    Some(s) => format!("from {s:.0} s after its end"),
                    None => "not by the end of the scenario".to_owned(),
                }
            );
        }
        if !self.taps.is_empty() {
            out.push_str("\n**Analytics tap** (the choreography's pages while `storefront analytics-tap` replays every topic from the beginning at full speed, in a loop; ms; rise: p99 over the first run without a tap)\n\n");
            out.push_str("| rate/s | s | tap | tap MiB/s | tap records/s | tap CPU % | broker CPU % | p50 | p99 | p99.9 | max | partial | errors | lost | p99 rise |\n");
            out.push_str("| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
            for t in &self.taps {
                let mut runs = vec![
                    ("none".to_owned(), &t.without),
                    ("replaying".to_owned(), &t.with_tap),
                ];
                if let Some(q) = &t.quota {
                    let name = format!(
                        "replaying, quota {:.1} MiB/s",
                        q.consumer_byte_rate as f64 / 1024.0 / 1024.0
                    );
                    runs.push((name, &q.run));
                }
                runs.push((
                    "replaying at idle CPU priority".to_owned(),
                    &t.idle_priority,
                ));
                runs.push(("none, after".to_owned(), &t.without_after));
                for (i, (name, run)) in runs.into_iter().enumerate() {
                    let s = &run.summary;
                    let (mib, records, cpu) = run.tap.as_ref().map_or(
                        ("–".to_owned(), "–".to_owned(), "–".to_owned()),
                        |r| {
                            (
                                format!("{:.1}", r.mib_per_sec),
                                format!("{:.0}", r.records_per_sec),
                                format!("{:.0}", r.cpu_percent),
                            )
                        },
                    );
                    let rise = if i == 0 {
                        String::new()
                    } else {
                        format!("{:+.0} %", t.p99_rise_percent(run))
                    };
                    let _ = writeln!(
                        out,
                        "| {} | {:.0} | {name} | {mib} | {records} | {cpu} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} | {} | {rise} |",
                        t.rate, t.duration_secs, run.broker_cpu_percent, s.p50_ms, s.p99_ms, s.p999_ms, s.max_ms, s.partial, errors(s), s.lost
                    );
                }
            }
        }
        for restart in &self.restarts {
            let _ = writeln!(
                out,
                "\n{} {} killed and started again: ready (`/readyz` 200) {:.0} ms after its start.",
                restart.design, restart.process, restart.ready_ms
            );
        }
        out.push_str("\n**Processes** (CPU: share of one core during the healthy run; memory: peak RSS over the design's run)\n\n");
        out.push_str("| design | process | CPU % | peak RSS MiB |\n| --- | --- | ---: | ---: |\n");
        for p in &self.processes {
            let _ = writeln!(
                out,
                "| {} | {} | {:.0} | {:.1} |",
                p.design, p.process, p.cpu_percent, p.peak_rss_mib
            );
        }
        if !self.idle.is_empty() {
            let _ = writeln!(
                out,
                "\n**Idle** (CPU, share of one core, logged in and serving nothing for {:.0} s)\n",
                self.idle_secs
            );
            out.push_str("| design | process | CPU % |\n| --- | --- | ---: |\n");
            for p in &self.idle {
                let _ = writeln!(
                    out,
                    "| {} | {} | {:.1} |",
                    p.design, p.process, p.cpu_percent
                );
            }
            let total: f64 = self.idle.iter().map(|p| p.cpu_percent).sum();
            let _ = writeln!(out, "| | all | {total:.1} |");
        }
        if !self.capacity.is_empty() {
            let _ = writeln!(out, "\n**Capacity** (p99 ms by rate; sustained: p99 under {SUSTAINED_P99_MS} ms, nothing lost, under 1 % errors)\n");
            let designs = self.designs();
            let mut rates: Vec<f64> = self.capacity.iter().map(|p| p.rate).collect();
            rates.sort_by(f64::total_cmp);
            rates.dedup();
            out.push_str("| rate/s |");
            for d in &designs {
                let _ = write!(out, " {d} |");
            }
            out.push_str("\n| ---: |");
            out.push_str(&" ---: |".repeat(designs.len()));
            out.push('\n');
            for rate in rates {
                let _ = write!(out, "| {rate} |");
                for d in &designs {
                    match self
                        .capacity
                        .iter()
                        .find(|p| p.design == *d && p.rate == rate)
                    {
                        Some(p) => {
                            let mark = if sustained(&p.summary) { "" } else { " ✗" };
                            let _ = write!(out, " {:.1}{mark} |", p.summary.p99_ms);
                        }
                        None => out.push_str(" – |"),
                    }
                }
                out.push('\n');
            }
            out.push_str("\n| design | highest sustained rate/s |\n| --- | ---: |\n");
            for d in &designs {
                let best = self
                    .capacity_of(*d)
                    .map_or("none of the rates tried".to_owned(), |r| r.to_string());
                let _ = writeln!(out, "| {d} | {best} |");
            }
        }
        if !self.tuning.is_empty() {
            out.push_str("\n**Tuning** (the choreography, one setting changed at a time from the defaults)\n\n");
            out.push_str(
                "| setting | rate/s | p50 | p99 | max | partial | errors | lost | broker CPU % |\n",
            );
            out.push_str("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
            for t in &self.tuning {
                let s = &t.summary;
                let _ = writeln!(
                    out,
                    "| {} | {} | {:.1} | {:.1} | {:.1} | {} | {} | {} | {:.0} |",
                    t.setting,
                    t.rate,
                    s.p50_ms,
                    s.p99_ms,
                    s.max_ms,
                    s.partial,
                    s.errors,
                    s.lost,
                    t.broker_cpu_percent
                );
            }
        }
        for failure in &self.tuning_failures {
            let _ = writeln!(out, "\nNot measured: {failure}");
        }
        out.push_str("\n**Targets** (the choreography)\n\n");
        for line in self.targets() {
            let _ = writeln!(out, "- {line}");
        }
        out
    }

    fn designs(&self) -> Vec<Design> {
        let mut designs: Vec<Design> = self
            .scenarios
            .iter()
            .map(|r| r.design)
            .chain(self.capacity.iter().map(|p| p.design))
            .collect();
        designs.sort();
        designs.dedup();
        designs
    }

    /// Each target of the issue, met or missed and by how much.
    pub fn targets(&self) -> Vec<String> {
        let mut lines = Vec::new();
        let verdict = |met: bool| if met { "met" } else { "MISSED" };
        let healthy = self.result(Design::Choreography, Scenario::Healthy);
        if let (Some(floor), Some(h)) = (&self.floor, healthy) {
            let (r50, r99) = (
                h.summary.p50_ms / floor.floor_p50_ms,
                h.summary.p99_ms / floor.floor_p99_ms,
            );
            lines.push(format!(
                "p50 within 1.3x the floor at {}/s: {:.1} ms / {:.1} ms = {r50:.2}x, {}",
                h.rate,
                h.summary.p50_ms,
                floor.floor_p50_ms,
                verdict(r50 <= 1.3)
            ));
            lines.push(format!(
                "p99 within 2x the floor at {}/s: {:.1} ms / {:.1} ms = {r99:.2}x, {}",
                h.rate,
                h.summary.p99_ms,
                floor.floor_p99_ms,
                verdict(r99 <= 2.0)
            ));
        }
        if let (Some(h), Some(chain)) = (healthy, self.result(Design::Chain, Scenario::Healthy)) {
            let ratio = h.summary.p50_ms / chain.summary.p50_ms;
            lines.push(format!(
                "p50 within 2x the serial chain's at {}/s: {:.1} ms / {:.1} ms = {ratio:.2}x, {}",
                h.rate,
                h.summary.p50_ms,
                chain.summary.p50_ms,
                verdict(ratio <= 2.0)
            ));
        }
        for restart in self
            .restarts
            .iter()
            .filter(|r| r.design == Design::Choreography)
        {
            lines.push(format!(
                "{} killed: serving within 1 s of its restart: ready after {:.0} ms, {}",
                restart.process,
                restart.ready_ms,
                verdict(restart.ready_ms <= 1000.0)
            ));
        }
        if let Some(killed) = self.result(Design::Choreography, Scenario::Killed) {
            lines.push(format!(
                "history killed: no error while it is down: {} errors, {} lost, {}",
                killed.summary.errors,
                killed.summary.lost,
                verdict(killed.summary.errors == 0 && killed.summary.lost == 0)
            ));
        }
        if let (Some(burst), Some(recovery)) = (
            self.result(Design::Choreography, Scenario::Burst),
            self.burst_recoveries
                .iter()
                .find(|r| r.design == Design::Choreography),
        ) {
            let settled = recovery.settled_after_secs;
            lines.push(format!(
                "burst at 5x for 5 s: nothing lost, p99 under {SUSTAINED_P99_MS} ms within 2 s of its end: {} lost, {}, {}",
                burst.summary.lost,
                settled.map_or("not settled by the end".to_owned(), |s| format!("settled after {s:.0} s")),
                verdict(burst.summary.lost == 0 && settled.is_some_and(|s| s <= 2.0))
            ));
        }
        let best = self.capacity_of(Design::Choreography);
        if self
            .capacity
            .iter()
            .any(|p| p.design == Design::Choreography)
        {
            let best_rate = best.unwrap_or(0.0);
            lines.push(format!(
                "1,000 page requests/s with p99 under {SUSTAINED_P99_MS} ms: highest sustained {best_rate}/s, {}{}",
                verdict(best_rate >= 1000.0),
                if best_rate < 1000.0 {
                    format!(" by {:.0} %", (1000.0 - best_rate) / 10.0)
                } else {
                    String::new()
                }
            ));
        }
        if let Some(slow) = self.result(Design::Choreography, Scenario::SlowAds) {
            let bound = self.deadline_ms as f64 + 10.0;
            lines.push(format!(
                "slow ads: p99 {:.1} ms against the deadline plus 10 ms ({bound} ms), {}",
                slow.summary.p99_ms,
                verdict(slow.summary.p99_ms <= bound)
            ));
        }
        let services: Vec<&ProcessUse> = self
            .processes
            .iter()
            .filter(|p| {
                p.design == Design::Choreography
                    && p.process != "broker"
                    && !p.process.starts_with("bench")
            })
            .collect();
        if !services.is_empty() {
            let worst = services
                .iter()
                .max_by(|a, b| a.peak_rss_mib.total_cmp(&b.peak_rss_mib))
                .expect("not empty");
            lines.push(format!(
                "resident memory under 100 MB per service: largest {} at {:.1} MiB ({:.1} MB), {}",
                worst.process,
                worst.peak_rss_mib,
                worst.peak_rss_mib * 1.048_576,
                verdict(worst.peak_rss_mib * 1.048_576 < 100.0)
            ));
        }
        for tap in &self.taps {
            let (without, with_tap) = (&tap.without.summary, &tap.with_tap.summary);
            let rise = tap.p99_rise_percent(&tap.with_tap);
            lines.push(format!(
                "an analytics tap replaying every topic raises the page p99 at {}/s by under 20 %: {:.1} ms to {:.1} ms = {rise:+.0} %, {} (without a tap again: {:.1} ms)",
                tap.rate,
                without.p99_ms,
                with_tap.p99_ms,
                verdict(rise < 20.0),
                tap.without_after.summary.p99_ms
            ));
            let rise = tap.p99_rise_percent(&tap.idle_priority);
            lines.push(format!(
                "the same with the tap at idle CPU priority (as on its own machine): {:.1} ms to {:.1} ms = {rise:+.0} %, {}",
                without.p99_ms,
                tap.idle_priority.summary.p99_ms,
                verdict(rise < 20.0)
            ));
            if let Some(q) = &tap.quota {
                let rise = tap.p99_rise_percent(&q.run);
                lines.push(format!(
                    "the same under the analytics quota ({:.1} MiB/s): {:.1} ms to {:.1} ms = {rise:+.0} %, {}",
                    q.consumer_byte_rate as f64 / 1024.0 / 1024.0,
                    without.p99_ms,
                    q.run.summary.p99_ms,
                    verdict(rise < 20.0)
                ));
            }
        }
        lines
    }

    /// p99 against rate for each design, log-scaled latency, as an SVG document.
    pub fn capacity_svg(&self) -> String {
        const W: f64 = 720.0;
        const H: f64 = 420.0;
        const LEFT: f64 = 70.0;
        const RIGHT: f64 = 160.0;
        const TOP: f64 = 40.0;
        const BOTTOM: f64 = 60.0;
        let colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];
        let max_rate = self.capacity.iter().map(|p| p.rate).fold(1.0, f64::max);
        let (lo, hi) = (1.0_f64, 10_000.0_f64);
        let x = |rate: f64| LEFT + rate / max_rate * (W - LEFT - RIGHT);
        let y = |ms: f64| {
            let v = ms.clamp(lo, hi).log10();
            TOP + (1.0 - (v - lo.log10()) / (hi.log10() - lo.log10())) * (H - TOP - BOTTOM)
        };
        let mut svg = format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="22" text-anchor="middle" font-size="15">p99 latency by offered rate (log scale)</text>
"#,
            (W - RIGHT + LEFT) / 2.0
        );
        for ms in [1.0, 10.0, 100.0, 1000.0, 10000.0] {
            let _ = writeln!(
                svg,
                r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{ms} ms</text>"##,
                W - RIGHT,
                LEFT - 6.0,
                y(ms) + 4.0,
                y = y(ms)
            );
        }
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#888" stroke-dasharray="4 3"/>"##,
            W - RIGHT,
            y = y(SUSTAINED_P99_MS)
        );
        let ticks = 5;
        for i in 0..=ticks {
            let rate = max_rate * f64::from(i) / f64::from(ticks);
            let _ = writeln!(
                svg,
                r#"<text x="{:.1}" y="{}" text-anchor="middle">{rate:.0}</text>"#,
                x(rate),
                H - BOTTOM + 18.0
            );
        }
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">page requests per second</text>"#,
            (W - RIGHT + LEFT) / 2.0,
            H - 16.0
        );
        for (i, design) in self.designs().iter().enumerate() {
            let color = colors[i % colors.len()];
            let mut points: Vec<&CapacityPoint> = self
                .capacity
                .iter()
                .filter(|p| p.design == *design)
                .collect();
            points.sort_by(|a, b| a.rate.total_cmp(&b.rate));
            let path: Vec<String> = points
                .iter()
                .map(|p| format!("{:.1},{:.1}", x(p.rate), y(p.summary.p99_ms)))
                .collect();
            let _ = writeln!(
                svg,
                r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
                path.join(" ")
            );
            for p in &points {
                let _ = writeln!(
                    svg,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}"/>"#,
                    x(p.rate),
                    y(p.summary.p99_ms)
                );
            }
            let ly = TOP + 20.0 * i as f64;
            let _ = writeln!(
                svg,
                r#"<line x1="{}" x2="{}" y1="{ly}" y2="{ly}" stroke="{color}" stroke-width="2"/><text x="{}" y="{}">{design}</text>"#,
                W - RIGHT + 15.0,
                W - RIGHT + 35.0,
                W - RIGHT + 40.0,
                ly + 4.0
            );
        }
        svg.push_str("</svg>\n");
        svg
    }
}

/// The error count, and by status when there are any: `12 (504: 10, 429: 2)`.
fn errors(summary: &Summary) -> String {
    if summary.errors == 0 {
        return "0".into();
    }
    let by_status: Vec<String> = summary
        .error_statuses
        .iter()
        .map(|(status, n)| format!("{status}: {n}"))
        .collect();
    format!("{} ({})", summary.errors, by_status.join(", "))
}

fn sustained(summary: &Summary) -> bool {
    summary.p99_ms < SUSTAINED_P99_MS
        && summary.lost == 0
        && (summary.errors as f64) < 0.01 * summary.sent as f64
}
