//! Leader election for applications over a `coordination.k8s.io/v1` Lease,
//! as client-go's `leaderelection` does it: every write is a
//! compare-and-swap on the Lease's resourceVersion (creation is a
//! create-only apply), so two candidates can never both hold it.
//!
//! Expiry is judged by the candidate's own clock from when it last saw the
//! record change (not from the `renewTime` written by another machine), so
//! clock skew between candidates does not shorten a lease: a holder that
//! stops renewing is replaced one lease duration after the others noticed.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::api::autoscaling::{Lease, LeaseSpec, MicroTime};
use crate::api::{Object, ObjectMeta};
use crate::client::{ClientError, CorralClient};

/// What a candidate should do with the lease as it stands (pure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// No lease yet: create it, holding it.
    Create,
    /// Ours: renew it.
    Renew,
    /// Free (released) or expired: take it over.
    TakeOver,
    /// Someone else holds it, for at most this long still.
    Wait { holder: String, remaining: Duration },
}

/// Decides from the lease, `me`, and how long ago this candidate saw the
/// record last change (`unchanged_for`).
pub fn step(lease: Option<&LeaseSpec>, me: &str, unchanged_for: Duration) -> Step {
    let Some(spec) = lease else { return Step::Create };
    match spec.holder_identity.as_deref() {
        Some(h) if h == me => Step::Renew,
        None | Some("") => Step::TakeOver,
        Some(holder) => {
            let duration = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(0).max(0) as u64);
            match duration.checked_sub(unchanged_for) {
                Some(remaining) if !remaining.is_zero() => {
                    Step::Wait { holder: holder.to_string(), remaining }
                }
                _ => Step::TakeOver,
            }
        }
    }
}

/// One candidate for one Lease.
pub struct LeaseLock {
    client: CorralClient,
    namespace: String,
    name: String,
    identity: String,
    duration: Duration,
    /// The resourceVersion last seen, and when it was first seen.
    observed: Mutex<Option<(String, Instant)>>,
}

impl LeaseLock {
    pub fn new(
        client: CorralClient,
        namespace: impl Into<String>,
        name: impl Into<String>,
        identity: impl Into<String>,
        duration: Duration,
    ) -> Self {
        LeaseLock {
            client,
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            duration,
            observed: Mutex::new(None),
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The lease as stored now (`None`: nobody created it yet).
    pub async fn observe(&self) -> Result<Option<Lease>, ClientError> {
        match self.client.get_object("leases", &self.namespace, &self.name).await {
            Ok(Object::Lease(lease)) => {
                let rv = lease.metadata.resource_version.clone().unwrap_or_default();
                let mut observed = self.observed.lock().expect("observed");
                if observed.as_ref().is_none_or(|(seen, _)| *seen != rv) {
                    *observed = Some((rv, Instant::now()));
                }
                Ok(Some(lease))
            }
            Ok(other) => Err(ClientError::Other(format!(
                "lease {}: the API answered with a {}",
                self.name,
                other.kind()
            ))),
            Err(ClientError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Acquires the lease or renews it; true when this candidate holds it
    /// afterwards. Losing a race is `Ok(false)`, not an error.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, ClientError> {
        let current = self.observe().await?;
        let unchanged_for =
            self.observed.lock().expect("observed").as_ref().map_or(Duration::ZERO, |(_, t)| t.elapsed());
        let now = MicroTime::now();
        let secs = self.duration.as_secs().max(1) as i32;
        let result = match step(current.as_ref().map(|l| &l.spec), &self.identity, unchanged_for) {
            Step::Wait { .. } => return Ok(false),
            Step::Create => {
                let lease = Lease {
                    api_version: "coordination.k8s.io/v1".into(),
                    kind: "Lease".into(),
                    metadata: ObjectMeta {
                        name: self.name.clone(),
                        namespace: Some(self.namespace.clone()),
                        ..Default::default()
                    },
                    spec: LeaseSpec {
                        holder_identity: Some(self.identity.clone()),
                        lease_duration_seconds: Some(secs),
                        acquire_time: Some(now),
                        renew_time: Some(now),
                        lease_transitions: Some(0),
                    },
                };
                self.client.create(&Object::Lease(lease)).await
            }
            step @ (Step::Renew | Step::TakeOver) => {
                let mut lease = current.expect("a lease to renew or take over");
                if step == Step::TakeOver {
                    lease.spec.acquire_time = Some(now);
                    lease.spec.lease_transitions = Some(lease.spec.lease_transitions.unwrap_or(0) + 1);
                }
                lease.spec.holder_identity = Some(self.identity.clone());
                lease.spec.lease_duration_seconds = Some(secs);
                lease.spec.renew_time = Some(now);
                // Its resourceVersion makes this a compare-and-swap.
                self.client.apply(&Object::Lease(lease)).await.map(|(o, _)| o)
            }
        };
        match result {
            Ok(_) => Ok(true),
            Err(ClientError::Conflict(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the lease up if this candidate holds it, so another takes it
    /// at once instead of after the lease duration.
    pub async fn release(&self) -> Result<(), ClientError> {
        let Some(mut lease) = self.observe().await? else { return Ok(()) };
        if lease.spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        lease.spec.holder_identity = None;
        lease.spec.renew_time = Some(MicroTime::now());
        match self.client.apply(&Object::Lease(lease)).await {
            Ok(_) | Err(ClientError::Conflict(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held_by(holder: &str, secs: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(secs),
            ..Default::default()
        }
    }

    #[test]
    fn steps_follow_the_holder_and_the_observed_age() {
        assert_eq!(step(None, "a", Duration::ZERO), Step::Create);
        assert_eq!(step(Some(&held_by("a", 10)), "a", Duration::from_secs(99)), Step::Renew);
        assert_eq!(
            step(Some(&held_by("b", 10)), "a", Duration::from_secs(4)),
            Step::Wait { holder: "b".into(), remaining: Duration::from_secs(6) }
        );
        assert_eq!(step(Some(&held_by("b", 10)), "a", Duration::from_secs(10)), Step::TakeOver);
        assert_eq!(step(Some(&LeaseSpec::default()), "a", Duration::ZERO), Step::TakeOver, "released");
        assert_eq!(
            step(Some(&held_by("", 10)), "a", Duration::ZERO),
            Step::TakeOver,
            "released by client-go"
        );
    }
}
