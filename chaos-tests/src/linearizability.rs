//! Checks a register history for linearizability against a
//! compare-and-swap register model ([`CasRegister`], a stateright
//! [`SequentialSpec`]).
//!
//! The search is Wing & Gong's with Lowe's memoization of (linearized set,
//! model state), as in Porcupine: stateright's [`LinearizabilityTester`]
//! explores the same orders without memoization, which is exponential once
//! a run leaves a few dozen writes with unknown outcome. The unit tests
//! check that both agree on thousands of random small histories.
//!
//! Linearizability is local (a history is linearizable iff each object's
//! sub-history is), so every key is checked on its own, which keeps the
//! search small. Writes that ended unknown stay open: the tester may place
//! them anywhere after their invocation, or nowhere (writes every master
//! refused before applying them are left out, as failed reads are); once their value
//! (unique to them) was seen, they return there at the latest, which every
//! linearization respects and which keeps them from multiplying the search
//! (soak seeds 80 and 145 of the 3-master nemesis gave up after 5 000 000
//! states before). Failed reads had no
//! effect and are left out. Separately, every value must carry one revision
//! wherever it is seen (a write applied twice would show two).
//!
//! A failing history is written to a file whose path the error names.

use std::collections::BTreeMap;
use std::path::PathBuf;

use stateright::semantics::SequentialSpec;

use crate::history::{Call, Op, Outcome};

/// A register holding a value (unique per write) or nothing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CasRegister(pub Option<u32>);

#[derive(Debug, Clone, PartialEq)]
pub enum Ret {
    ReadOk(Option<u32>),
    WriteOk,
    CasFailed,
}

impl SequentialSpec for CasRegister {
    type Op = Call;
    type Ret = Ret;

    fn invoke(&mut self, op: &Call) -> Ret {
        match *op {
            Call::Read => Ret::ReadOk(self.0),
            Call::Write(v) => {
                self.0 = Some(v);
                Ret::WriteOk
            }
            Call::Cas { expect, new } if self.0 == expect => {
                self.0 = Some(new);
                Ret::WriteOk
            }
            Call::Cas { .. } => Ret::CasFailed,
        }
    }
}

/// What a recorded outcome says in the model's terms; `None` for an
/// operation that stays open (unknown write) or is left out (failed read).
fn ret_of(outcome: &Outcome) -> Option<Ret> {
    match outcome {
        Outcome::Read(v) => Some(Ret::ReadOk(v.map(|(v, _)| v))),
        Outcome::Written(_) => Some(Ret::WriteOk),
        Outcome::CasFailed => Some(Ret::CasFailed),
        Outcome::ReadFailed(_) | Outcome::NotApplied(_) | Outcome::Unknown(_) => None,
    }
}

/// Why a history is not linearizable.
#[derive(Debug)]
pub struct Anomaly {
    pub key: usize,
    pub what: String,
    pub written_to: Option<PathBuf>,
}

impl std::fmt::Display for Anomaly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "key {}: {}", self.key, self.what)?;
        if let Some(p) = &self.written_to {
            write!(f, " (history written to {})", p.display())?;
        }
        Ok(())
    }
}

/// Checks every key's sub-history; on failure writes the key's history to
/// `dump` (when given) and returns what is wrong.
pub fn check(ops: &[Op], dump: Option<PathBuf>) -> Result<(), Anomaly> {
    let mut by_key: BTreeMap<usize, Vec<&Op>> = BTreeMap::new();
    for op in ops {
        by_key.entry(op.key).or_default().push(op);
    }
    for (key, ops) in by_key {
        if let Err(what) = check_revisions(&ops).and_then(|()| check_key_reduced(&ops)) {
            let written_to = dump.and_then(|path| write_history(&path, key, &ops, &what).ok().map(|()| path));
            return Err(Anomaly { key, what, written_to });
        }
    }
    Ok(())
}

/// Every value must be seen at one revision only.
fn check_revisions(ops: &[&Op]) -> Result<(), String> {
    let mut seen: BTreeMap<u32, u64> = BTreeMap::new();
    for op in ops {
        let observed = match (&op.call, op.returned.as_ref().map(|r| &r.2)) {
            (_, Some(Outcome::Read(Some((v, rev))))) => (*v, *rev),
            (Call::Write(v) | Call::Cas { new: v, .. }, Some(Outcome::Written(rev))) => (*v, *rev),
            _ => continue,
        };
        if let Some(rev) = seen.insert(observed.0, observed.1) {
            if rev != observed.1 {
                return Err(format!(
                    "value {} seen at revisions {rev} and {} (a write applied twice?)",
                    observed.0, observed.1
                ));
            }
        }
    }
    Ok(())
}

/// The same question answered by stateright's tester (the oracle of the
/// unit tests).
#[cfg(test)]
fn check_key_stateright(ops: &[&Op]) -> Result<(), String> {
    use stateright::semantics::{ConsistencyTester, LinearizabilityTester};

    // Replay invocations and returns in real-time order.
    let mut events: Vec<(u64, usize, bool)> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        if matches!(op.returned, Some((_, _, Outcome::ReadFailed(_) | Outcome::NotApplied(_)))) {
            continue;
        }
        events.push((op.invoked, i, true));
        if let Some((seq, _, outcome)) = &op.returned {
            if ret_of(outcome).is_some() {
                events.push((*seq, i, false));
            }
        }
    }
    events.sort_unstable();
    let mut tester = LinearizabilityTester::<u64, CasRegister>::new(CasRegister(None));
    for (_, i, invoke) in events {
        let op = ops[i];
        let step = if invoke {
            tester.on_invoke(op.process, op.call).map(|_| ())
        } else {
            let ret = op.returned.as_ref().and_then(|r| ret_of(&r.2)).expect("only returns with a result");
            tester.on_return(op.process, ret).map(|_| ())
        };
        step.map_err(|e| format!("malformed history: {e}"))?;
    }
    if tester.is_consistent() {
        Ok(())
    } else {
        Err(format!("no linearization of its {} operations exists", ops.len()))
    }
}

/// One operation in the search: the call, and what came back (`None`: an
/// unknown write, which may have taken effect with either outcome).
struct Entry {
    call: Call,
    ret: Option<Ret>,
}

impl CasRegister {
    /// Applies `e` if the model allows what it returned.
    fn step(&self, e: &Entry) -> Option<CasRegister> {
        let mut next = self.clone();
        let ret = next.invoke(&e.call);
        match &e.ret {
            None => Some(next),
            Some(r) if *r == ret => Some(next),
            Some(_) => None,
        }
    }
}

/// Writes that ended unknown and whose value nobody saw make the search
/// exponential (each may or may not have happened). A linearization
/// without them is one with them never taking effect, so a history that
/// passes without them passes; only a failure is re-checked on the whole.
fn check_key_reduced(ops: &[&Op]) -> Result<(), String> {
    let observed: std::collections::HashSet<u32> = ops
        .iter()
        .flat_map(|op| {
            let read = match &op.returned {
                Some((_, _, Outcome::Read(Some((v, _))))) => Some(*v),
                _ => None,
            };
            let expected = match op.call {
                Call::Cas { expect, .. } => expect,
                _ => None,
            };
            read.into_iter().chain(expected)
        })
        .collect();
    let unseen_unknown = |op: &&&Op| {
        let unknown = matches!(op.returned, Some((_, _, Outcome::Unknown(_))));
        let value = match op.call {
            Call::Write(v) | Call::Cas { new: v, .. } => Some(v),
            Call::Read => None,
        };
        unknown && value.is_some_and(|v| !observed.contains(&v))
    };
    let reduced: Vec<&Op> = ops.iter().filter(|op| !unseen_unknown(op)).copied().collect();
    if reduced.len() < ops.len() && check_key_wgl(&reduced).is_ok() {
        return Ok(());
    }
    check_key_wgl(ops)
}

/// The most (linearized set, state) pairs the search may visit before it
/// gives up with an error (instead of running for hours).
const SEARCH_LIMIT: usize = 5_000_000;

/// Wing & Gong's search with Lowe's cache over the events of one key.
fn check_key_wgl(ops: &[&Op]) -> Result<(), String> {
    let mut entries = Vec::new();
    // When each value was first seen to be the register's: the earliest
    // return of a read of it or of a successful CAS expecting it.
    let mut first_seen: std::collections::HashMap<u32, u64> = std::collections::HashMap::new();
    for op in ops {
        let seen = match (&op.call, &op.returned) {
            (_, Some((seq, _, Outcome::Read(Some((v, _)))))) => Some((*v, *seq)),
            (Call::Cas { expect: Some(v), .. }, Some((seq, _, Outcome::Written(_)))) => Some((*v, *seq)),
            _ => None,
        };
        if let Some((v, seq)) = seen {
            let first = first_seen.entry(v).or_insert(seq);
            *first = (*first).min(seq);
        }
    }
    // (time, is return, entry index). A write that ended unknown returns at
    // the end of time, unless its value (unique to it) was seen: then it took
    // effect before that, and returns there at the latest. Every
    // linearization has it before the op that saw its value, so this loses
    // none, and it keeps such writes from multiplying the search.
    let mut events: Vec<(u64, bool, usize)> = Vec::new();
    for op in ops {
        let Some((ret_seq, _, outcome)) = &op.returned else { continue };
        if matches!(outcome, Outcome::ReadFailed(_) | Outcome::NotApplied(_)) {
            continue;
        }
        let ret = ret_of(outcome);
        let written = match op.call {
            Call::Write(v) | Call::Cas { new: v, .. } => Some(v),
            Call::Read => None,
        };
        let seen_by = written.and_then(|v| first_seen.get(&v)).copied().filter(|seq| *seq > op.invoked);
        let returned = match (&ret, seen_by) {
            (Some(_), _) => *ret_seq,
            (None, Some(seq)) => seq,
            (None, None) => u64::MAX,
        };
        let i = entries.len();
        entries.push(Entry { call: op.call, ret });
        events.push((op.invoked, false, i));
        events.push((returned, true, i));
    }
    events.sort_unstable();
    // A circular doubly linked list over the events; node n is the sentinel.
    let n = events.len();
    let mut next: Vec<usize> = (1..=n).chain([if n > 0 { 0 } else { n }]).collect();
    let mut prev: Vec<usize> =
        (0..n).map(|i| if i == 0 { n } else { i - 1 }).chain([n.saturating_sub(1)]).collect();
    let mut ret_node = vec![0usize; entries.len()];
    for (node, (_, is_ret, i)) in events.iter().enumerate() {
        if *is_ret {
            ret_node[*i] = node;
        }
    }
    let lift = |next: &mut Vec<usize>, prev: &mut Vec<usize>, node: usize| {
        let (p, nx) = (prev[node], next[node]);
        next[p] = nx;
        if nx != n {
            prev[nx] = p;
        }
    };
    let unlift = |next: &mut Vec<usize>, prev: &mut Vec<usize>, node: usize| {
        let (p, nx) = (prev[node], next[node]);
        next[p] = node;
        if nx != n {
            prev[nx] = node;
        }
    };
    let words = entries.len().div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut cache: std::collections::HashSet<(Vec<u64>, Option<u32>)> = std::collections::HashSet::new();
    let mut state = CasRegister(None);
    let mut calls: Vec<(usize, CasRegister)> = Vec::new();
    let mut node = next[n];
    let mut longest = 0;
    while next[n] != n {
        if node == n {
            return Err(format!("internal: ran off the list after {longest} operations"));
        }
        let (_, is_ret, i) = events[node];
        if !is_ret {
            if let Some(after) = state.step(&entries[i]) {
                linearized[i / 64] |= 1 << (i % 64);
                if cache.len() > SEARCH_LIMIT {
                    return Err(format!(
                        "undecided: gave up after {SEARCH_LIMIT} states of {} operations",
                        entries.len()
                    ));
                }
                if cache.insert((linearized.clone(), after.0)) {
                    calls.push((node, state));
                    state = after;
                    longest = longest.max(calls.len());
                    lift(&mut next, &mut prev, node);
                    lift(&mut next, &mut prev, ret_node[i]);
                    node = next[n];
                    continue;
                }
                linearized[i / 64] &= !(1 << (i % 64));
            }
            node = next[node];
        } else {
            // A return reached with its call not linearized: backtrack.
            let Some((call_node, before)) = calls.pop() else {
                return Err(format!(
                    "no linearization of its {} operations exists (the longest linearizable prefix has {longest})",
                    entries.len()
                ));
            };
            let (_, _, j) = events[call_node];
            state = before;
            linearized[j / 64] &= !(1 << (j % 64));
            unlift(&mut next, &mut prev, ret_node[j]);
            unlift(&mut next, &mut prev, call_node);
            node = next[call_node];
        }
    }
    Ok(())
}

fn write_history(path: &PathBuf, key: usize, ops: &[&Op], what: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut text = format!("# key {key}: {what}\n# process key #seq invoked..#seq returned call -> outcome (#seq: real-time order)\n");
    for op in ops {
        text.push_str(&op.to_string());
        text.push('\n');
    }
    std::fs::write(path, text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Builds ops from (process, call, invoke seq, return seq, outcome).
    fn history(rows: &[(u64, Call, u64, u64, Outcome)]) -> Vec<Op> {
        rows.iter()
            .map(|(p, call, inv, ret, out)| Op {
                process: *p,
                key: 0,
                call: *call,
                invoked: *inv,
                invoked_at: Duration::from_millis(*inv),
                returned: Some((*ret, Duration::from_millis(*ret), out.clone())),
            })
            .collect()
    }

    #[test]
    fn sequential_writes_and_reads_are_linearizable() {
        let h = history(&[
            (1, Call::Write(1), 1, 2, Outcome::Written(10)),
            (2, Call::Read, 3, 4, Outcome::Read(Some((1, 10)))),
            (1, Call::Cas { expect: Some(1), new: 2 }, 5, 6, Outcome::Written(11)),
            (2, Call::Cas { expect: Some(1), new: 3 }, 7, 8, Outcome::CasFailed),
            (2, Call::Read, 9, 10, Outcome::Read(Some((2, 11)))),
        ]);
        check(&h, None).unwrap();
    }

    #[test]
    fn a_stale_read_after_an_acknowledged_write_is_caught() {
        let h = history(&[
            (1, Call::Write(1), 1, 2, Outcome::Written(10)),
            (1, Call::Write(2), 3, 4, Outcome::Written(11)),
            (2, Call::Read, 5, 6, Outcome::Read(Some((1, 10)))),
        ]);
        let err = check(&h, None).unwrap_err();
        assert!(err.what.contains("no linearization"), "{err}");
    }

    #[test]
    fn concurrent_operations_may_take_either_order() {
        let h = history(&[
            (1, Call::Write(1), 1, 4, Outcome::Written(10)),
            (2, Call::Read, 2, 3, Outcome::Read(Some((1, 10)))),
            (3, Call::Read, 5, 6, Outcome::Read(Some((1, 10)))),
        ]);
        check(&h, None).unwrap();
    }

    #[test]
    fn an_unknown_write_may_have_happened_or_not() {
        let mut h = history(&[
            (1, Call::Write(1), 1, 2, Outcome::Unknown("timeout".into())),
            (2, Call::Read, 3, 4, Outcome::Read(None)),
            (2, Call::Read, 5, 6, Outcome::Read(Some((1, 10)))),
        ]);
        check(&h, None).unwrap();
        // ...but it cannot be undone once seen.
        h.extend(history(&[(2, Call::Read, 7, 8, Outcome::Read(None))]));
        assert!(check(&h, None).is_err());
    }

    #[test]
    fn a_cas_reported_failed_that_took_effect_is_caught() {
        let h = history(&[
            (1, Call::Write(1), 1, 2, Outcome::Written(10)),
            (1, Call::Cas { expect: Some(1), new: 2 }, 3, 4, Outcome::CasFailed),
            (2, Call::Read, 5, 6, Outcome::Read(Some((2, 11)))),
        ]);
        assert!(check(&h, None).is_err());
    }

    /// Random small histories of 3 processes: the memoized search and
    /// stateright's tester give the same verdict.
    #[test]
    fn the_search_agrees_with_stateright_on_random_histories() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let (mut yes, mut no) = (0, 0);
        for _ in 0..3_000 {
            let mut ops: Vec<Op> = Vec::new();
            let mut seq = 0u64;
            let mut open: Vec<Option<usize>> = vec![None; 3];
            let mut process: Vec<u64> = vec![0, 100, 200];
            let mut value = 0u32;
            let mut reg: Option<u32> = None;
            for _ in 0..rng.gen_range(2..9) * 2 {
                let p = rng.gen_range(0..3);
                seq += 1;
                match open[p].take() {
                    None => {
                        value += 1;
                        let call = match rng.gen_range(0..3) {
                            0 => Call::Read,
                            1 => Call::Write(value),
                            _ => Call::Cas {
                                expect: rng.gen_bool(0.5).then(|| rng.gen_range(1..=value)),
                                new: value,
                            },
                        };
                        ops.push(Op {
                            process: process[p],
                            key: 0,
                            call,
                            invoked: seq,
                            invoked_at: Duration::ZERO,
                            returned: None,
                        });
                        open[p] = Some(ops.len() - 1);
                    }
                    Some(i) => {
                        // Mostly what a real register would answer, sometimes nonsense.
                        let outcome = match ops[i].call {
                            _ if rng.gen_bool(0.1) => {
                                process[p] += 1;
                                Outcome::Unknown("lost".into())
                            }
                            Call::Read => Outcome::Read(
                                if rng.gen_bool(0.8) { reg } else { Some(rng.gen_range(1..=value)) }
                                    .map(|v| (v, 0)),
                            ),
                            Call::Write(v) => {
                                reg = Some(v);
                                Outcome::Written(0)
                            }
                            Call::Cas { expect, new } if expect == reg => {
                                reg = Some(new);
                                Outcome::Written(0)
                            }
                            Call::Cas { .. } => Outcome::CasFailed,
                        };
                        ops[i].returned = Some((seq, Duration::ZERO, outcome));
                    }
                }
            }
            // Calls still open at the end stay unknown.
            for i in open.into_iter().flatten() {
                seq += 1;
                ops[i].returned = Some((seq, Duration::ZERO, Outcome::Unknown("open".into())));
            }
            let refs: Vec<&Op> = ops.iter().collect();
            let ours = check_key_wgl(&refs).is_ok();
            assert_eq!(
                ours,
                check_key_reduced(&refs).is_ok(),
                "the reduction changed the verdict on {ops:#?}"
            );
            assert_eq!(ours, check_key_stateright(&refs).is_ok(), "verdicts differ on {ops:#?}");
            if ours {
                yes += 1
            } else {
                no += 1
            }
        }
        assert!(yes > 300 && no > 300, "{yes} linearizable, {no} not: too one-sided to compare");
    }

    #[test]
    fn a_value_seen_at_two_revisions_is_caught_and_written_out() {
        let h = history(&[
            (1, Call::Write(1), 1, 2, Outcome::Written(12)),
            (2, Call::Read, 3, 4, Outcome::Read(Some((1, 10)))),
        ]);
        let path = std::env::temp_dir().join(format!("corral-lin-test-{}.txt", std::process::id()));
        let err = check(&h, Some(path.clone())).unwrap_err();
        assert!(err.what.contains("two revisions") || err.what.contains("revisions 12 and 10"), "{err}");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("Write(1)"), "{text}");
        std::fs::remove_file(path).unwrap();
    }
}
