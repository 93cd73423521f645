//! The fault vocabulary and the nemesis that injects it: a seeded schedule
//! of faults drawn at random over the first part of a run, then everything
//! healed and a quiet period in which the cluster must recover.
//!
//! The nemesis runs in the driver loop between simulation steps (it needs
//! the [`turmoil::Sim`] to crash and restart hosts). Faults that need the
//! API (membership changes) are handed to an admin client task in the
//! simulation through [`AdminRequest`]s.

use std::fmt;
use std::time::Duration;

use raft_store::NodeId;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc::UnboundedSender;

use crate::{master_host, observe};

/// The latency every link has when no fault is active.
pub const BASE_LATENCY: Duration = Duration::from_millis(5);

/// One kind of fault. Which masters it hits is decided when it starts,
/// from the seeded generator and who leads at that moment.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Split the masters in two: `minority` of them cannot reach the others.
    /// With `leader_in_minority` the current leader is on the small side.
    Partition { minority: usize, leader_in_minority: bool },
    /// Two halves that cannot see each other and one master (the bridge)
    /// that sees both.
    Bridge,
    /// Every message on every link is lost with this probability (turmoil
    /// then drops what is in flight on that link: streams stall until the
    /// HTTP/2 keepalive replaces the connection).
    Loss { rate: f64 },
    /// Every message is delayed by up to `max` (drawn per message: jitter).
    Latency { max: Duration },
    /// Crash `count` masters (at most a minority; the leader first when
    /// `leader`); they restart from their own data when the fault ends.
    Crash { count: usize, leader: bool },
    /// Crash one master and restart it at once from its data.
    Bounce { leader: bool },
    /// Partition one follower away, remove it from the cluster and add it
    /// back while the partition holds (it rejoins once healed).
    Membership,
}

/// A fault and when it starts and ends, in simulated time.
#[derive(Debug, Clone)]
pub struct Step {
    pub at: Duration,
    pub lasts: Duration,
    pub fault: Fault,
}

/// The faults of one run, then heal at `heal_at`, then quiet until `end`.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub steps: Vec<Step>,
    pub heal_at: Duration,
    pub end: Duration,
}

impl Schedule {
    /// Random faults (one at a time, each 1-8 s, 0.5-3 s apart) from
    /// `start` for `faults_for`, then `quiet` without faults.
    pub fn random(seed: u64, masters: usize, start: Duration, faults_for: Duration, quiet: Duration) -> Self {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x6e656d65_73697321);
        let minority = (masters - 1) / 2;
        let heal_at = start + faults_for;
        let mut steps = Vec::new();
        let mut at = start;
        while at < heal_at {
            let fault = match rng.gen_range(0..9) {
                0 => Fault::Partition { minority: rng.gen_range(1..=minority), leader_in_minority: false },
                1 => Fault::Partition { minority: rng.gen_range(1..=minority), leader_in_minority: true },
                2 => Fault::Bridge,
                3 => Fault::Loss { rate: rng.gen_range(0.002..0.03) },
                4 => Fault::Latency { max: Duration::from_millis(rng.gen_range(20..300)) },
                5 => Fault::Crash { count: rng.gen_range(1..=minority), leader: rng.gen_bool(0.5) },
                6 => Fault::Bounce { leader: rng.gen_bool(0.5) },
                7 => Fault::Membership,
                _ => Fault::Crash { count: minority, leader: true },
            };
            let lasts = Duration::from_millis(rng.gen_range(1_000..8_000));
            let lasts = lasts.min(heal_at.saturating_sub(at));
            steps.push(Step { at, lasts, fault });
            at += lasts + Duration::from_millis(rng.gen_range(500..3_000));
        }
        Schedule { steps, heal_at, end: heal_at + quiet }
    }
}

/// A membership change the nemesis asks the admin client to make.
#[derive(Debug, Clone, PartialEq)]
pub enum AdminRequest {
    /// Remove master `id`, then add it back.
    RemoveAndReadd(NodeId),
}

/// What a started fault changed, to undo when it ends.
#[derive(Debug)]
enum Undo {
    Links(Vec<(NodeId, NodeId)>),
    Loss,
    Latency,
    Restart(Vec<NodeId>),
    Nothing,
}

/// Injects a [`Schedule`] into a running simulation.
pub struct Nemesis {
    schedule: Schedule,
    masters: Vec<NodeId>,
    next: usize,
    active: Option<(Duration, Undo)>,
    healed: bool,
    rng: StdRng,
    admin: UnboundedSender<AdminRequest>,
    /// One line per fault started or ended, with the simulated time.
    pub log: Vec<String>,
}

impl Nemesis {
    pub fn new(
        seed: u64,
        schedule: Schedule,
        masters: Vec<NodeId>,
        admin: UnboundedSender<AdminRequest>,
    ) -> Self {
        Nemesis {
            schedule,
            masters,
            next: 0,
            active: None,
            healed: false,
            rng: StdRng::seed_from_u64(seed ^ 0x6661756c74),
            admin,
            log: Vec::new(),
        }
    }

    /// Starts and ends faults whose time has come; call after every step.
    pub fn tick(&mut self, sim: &mut turmoil::Sim<'_>) {
        let now = sim.elapsed();
        if let Some((until, _)) = &self.active {
            if now >= *until {
                let (_, undo) = self.active.take().expect("checked above");
                self.undo(sim, undo);
            }
        }
        if now >= self.schedule.heal_at {
            if !self.healed {
                self.heal(sim);
            }
            return;
        }
        if self.active.is_none() {
            if let Some(step) = self.schedule.steps.get(self.next).filter(|s| now >= s.at).cloned() {
                self.next += 1;
                let undo = self.start(sim, &step.fault);
                self.active = Some((now + step.lasts, undo));
            }
        }
    }

    /// Undoes every fault: links repaired, loss and latency back to normal,
    /// crashed masters restarted.
    pub fn heal(&mut self, sim: &mut turmoil::Sim<'_>) {
        if let Some((_, undo)) = self.active.take() {
            self.undo(sim, undo);
        }
        for a in &self.masters {
            for b in &self.masters {
                if a < b {
                    sim.repair(master_host(*a), master_host(*b));
                }
            }
        }
        self.healed = true;
        self.note(sim, "healed: every link repaired, every master running".into());
    }

    /// How many faults were started (repairs and restarts not counted).
    pub fn faults_injected(&self) -> usize {
        let ends = ["repaired", "over", "normal", "restarted", "healed"];
        self.log.iter().filter(|l| !ends.iter().any(|e| l.contains(e))).count()
    }

    fn note(&mut self, sim: &turmoil::Sim<'_>, what: String) {
        let line = format!("{:>8.3}s {what}", sim.elapsed().as_secs_f64());
        tracing::info!("nemesis: {line}");
        self.log.push(line);
    }

    /// The masters `fault` hits: `count` of them, the leader first if asked.
    fn pick(&mut self, count: usize, leader_first: bool, exclude_leader: bool) -> Vec<NodeId> {
        let leader = observe::current_leader();
        let mut pool: Vec<NodeId> = self.masters.clone();
        pool.shuffle(&mut self.rng);
        if let Some(l) = leader {
            pool.retain(|id| *id != l);
            if leader_first {
                pool.insert(0, l);
            } else if !exclude_leader {
                pool.push(l);
                pool.shuffle(&mut self.rng);
            }
        }
        pool.truncate(count);
        pool
    }

    /// Cuts every link between `side` and the other masters.
    fn cut(&self, sim: &turmoil::Sim<'_>, side: &[NodeId], others: &[NodeId]) -> Vec<(NodeId, NodeId)> {
        let mut cut = Vec::new();
        for a in side {
            for b in others {
                if a != b && !cut.contains(&(*b, *a)) {
                    sim.partition(master_host(*a), master_host(*b));
                    cut.push((*a, *b));
                }
            }
        }
        cut
    }

    fn rest(&self, side: &[NodeId]) -> Vec<NodeId> {
        self.masters.iter().copied().filter(|id| !side.contains(id)).collect()
    }

    fn start(&mut self, sim: &mut turmoil::Sim<'_>, fault: &Fault) -> Undo {
        match fault {
            Fault::Partition { minority, leader_in_minority } => {
                let side = self.pick(*minority, *leader_in_minority, !*leader_in_minority);
                let cut = self.cut(sim, &side, &self.rest(&side));
                self.note(sim, format!("partition {side:?} | {:?}", self.rest(&side)));
                Undo::Links(cut)
            }
            Fault::Bridge => {
                let mut all = self.masters.clone();
                all.shuffle(&mut self.rng);
                let bridge = all.pop().expect("at least one master");
                let (left, right) = all.split_at(all.len() / 2);
                let cut = self.cut(sim, left, right);
                self.note(sim, format!("bridge {bridge} between {left:?} and {right:?}"));
                Undo::Links(cut)
            }
            Fault::Loss { rate } => {
                sim.set_fail_rate(*rate);
                self.note(sim, format!("message loss {:.1}%", rate * 100.0));
                Undo::Loss
            }
            Fault::Latency { max } => {
                sim.set_max_message_latency(*max);
                self.note(sim, format!("latency up to {max:?}"));
                Undo::Latency
            }
            Fault::Crash { count, leader } => {
                let hit = self.pick(*count, *leader, false);
                for id in &hit {
                    sim.crash(master_host(*id));
                }
                self.note(sim, format!("crash {hit:?}"));
                Undo::Restart(hit)
            }
            Fault::Bounce { leader } => {
                let hit = self.pick(1, *leader, false);
                for id in &hit {
                    sim.bounce(master_host(*id));
                }
                self.note(sim, format!("bounce {hit:?}"));
                Undo::Nothing
            }
            Fault::Membership => {
                let side = self.pick(1, false, true);
                let cut = self.cut(sim, &side, &self.rest(&side));
                if let Some(id) = side.first() {
                    let _ = self.admin.send(AdminRequest::RemoveAndReadd(*id));
                }
                self.note(sim, format!("partition {side:?} and remove + re-add it"));
                Undo::Links(cut)
            }
        }
    }

    fn undo(&mut self, sim: &mut turmoil::Sim<'_>, undo: Undo) {
        match undo {
            Undo::Links(cut) => {
                for (a, b) in &cut {
                    sim.repair(master_host(*a), master_host(*b));
                }
                self.note(sim, "partition repaired".into());
            }
            Undo::Loss => {
                sim.set_fail_rate(0.0);
                self.note(sim, "message loss over".into());
            }
            Undo::Latency => {
                sim.set_max_message_latency(BASE_LATENCY);
                self.note(sim, "latency back to normal".into());
            }
            Undo::Restart(ids) => {
                for id in &ids {
                    sim.bounce(master_host(*id));
                }
                self.note(sim, format!("restarted {ids:?} from their data"));
            }
            Undo::Nothing => {}
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.steps {
            writeln!(f, "{:>7.3}s +{:.1}s {:?}", s.at.as_secs_f64(), s.lasts.as_secs_f64(), s.fault)?;
        }
        write!(f, "{:>7.3}s heal; quiet until {:.1}s", self.heal_at.as_secs_f64(), self.end.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schedule_is_a_function_of_its_seed() {
        let a =
            Schedule::random(7, 3, Duration::from_secs(2), Duration::from_secs(40), Duration::from_secs(10));
        let b =
            Schedule::random(7, 3, Duration::from_secs(2), Duration::from_secs(40), Duration::from_secs(10));
        assert_eq!(a.to_string(), b.to_string());
        assert!(a.steps.len() >= 4, "{a}");
        assert!(a.steps.iter().all(|s| s.at + s.lasts <= a.heal_at));
    }

    #[test]
    fn faults_never_take_more_than_a_minority() {
        for seed in 0..200 {
            let s = Schedule::random(seed, 5, Duration::ZERO, Duration::from_secs(60), Duration::ZERO);
            for step in &s.steps {
                match step.fault {
                    Fault::Partition { minority, .. } => assert!((1..=2).contains(&minority)),
                    Fault::Crash { count, .. } => assert!((1..=2).contains(&count)),
                    _ => {}
                }
            }
        }
    }
}
