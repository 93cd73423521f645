//! Who a data dir belongs to, and who the other masters are: the guard that
//! keeps a master which lost its data from voting its way back in (etcd
//! refuses the same with `--initial-cluster-state` and member ids).
//!
//! Every data dir holds an identity file ([`IDENTITY_FILE`]): the member id
//! it was started with, a random *incarnation* minted when the directory was
//! first used, and the cluster id once the master has learned it (the
//! leader mints it into the replicated map as [`CLUSTER_ID_KEY`]). An empty
//! data dir therefore always has a new incarnation.
//!
//! The leader records each member's incarnation in the replicated map
//! (`/corral/members/<id>`, [`MEMBERS_PREFIX`]) the first time it hears from
//! it. From then on every Raft request and reply carries the sender's
//! cluster id and incarnation, and both ends check them against the
//! registry ([`check_peer`]): a master of another cluster, or a master whose
//! data dir was wiped or replaced (another incarnation under a registered
//! id), is refused and counts for nothing, neither as a vote nor as an
//! acknowledgement. Such a master must be removed and join again (or get
//! its data dir back from a backup).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use crate::backup::CLUSTER_ID_KEY;
use crate::error::StoreError;
use crate::NodeId;

/// The identity file in a data dir.
pub const IDENTITY_FILE: &str = "corral-identity";
/// Where the leader records each member's incarnation: `/corral/members/<id>`.
pub const MEMBERS_PREFIX: &[u8] = b"/corral/members/";

/// gRPC metadata on every Raft request and reply.
pub const CLUSTER_HEADER: &str = "x-corral-cluster-id";
pub const MEMBER_HEADER: &str = "x-corral-member-id";
pub const INCARNATION_HEADER: &str = "x-corral-incarnation";

/// The registry key of member `id`.
pub fn member_key(id: NodeId) -> Vec<u8> {
    let mut key = MEMBERS_PREFIX.to_vec();
    key.extend_from_slice(id.to_string().as_bytes());
    key
}

/// The member id of a registry key.
pub fn member_of_key(key: &[u8]) -> Option<NodeId> {
    std::str::from_utf8(key.strip_prefix(MEMBERS_PREFIX)?).ok()?.parse().ok()
}

/// What the identity file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDirIdentity {
    pub member: NodeId,
    pub incarnation: String,
    pub cluster: Option<String>,
}

impl DataDirIdentity {
    fn encode(&self) -> String {
        format!(
            "# Which Corral master this data dir belongs to. Do not copy it to another master.\nmember={}\nincarnation={}\ncluster={}\n",
            self.member,
            self.incarnation,
            self.cluster.as_deref().unwrap_or_default()
        )
    }

    fn decode(text: &str) -> Result<Self, String> {
        let mut fields = BTreeMap::new();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            let (k, v) = line.split_once('=').ok_or_else(|| format!("{line:?} is not key=value"))?;
            fields.insert(k.trim(), v.trim());
        }
        let get = |k: &str| fields.get(k).copied().filter(|v| !v.is_empty());
        Ok(DataDirIdentity {
            member: get("member")
                .ok_or("no member id")?
                .parse()
                .map_err(|_| "the member id is not a number".to_string())?,
            incarnation: get("incarnation").ok_or("no incarnation")?.to_string(),
            cluster: get("cluster").map(String::from),
        })
    }

    /// Reads the identity of `dir` (None when it has none yet).
    pub fn read(dir: &Path) -> Result<Option<Self>, StoreError> {
        let path = dir.join(IDENTITY_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::decode(&text).map(Some).map_err(|e| {
                StoreError::Task(format!(
                    "{} is unreadable ({e}): restore the data dir from a backup",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::Task(format!("cannot read {}: {e}", path.display()))),
        }
    }

    /// Writes it durably (a temporary file renamed over the old one).
    pub fn write(&self, dir: &Path) -> Result<(), StoreError> {
        let path = dir.join(IDENTITY_FILE);
        let tmp: PathBuf = dir.join(format!("{IDENTITY_FILE}.tmp"));
        let fail = |e: std::io::Error| StoreError::Task(format!("cannot write {}: {e}", path.display()));
        let mut file = std::fs::File::create(&tmp).map_err(fail)?;
        file.write_all(self.encode().as_bytes()).map_err(fail)?;
        file.sync_all().map_err(fail)?;
        std::fs::rename(&tmp, &path).map_err(fail)?;
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(fail)
    }

    /// The identity of data dir `dir` for master `member`: the stored one,
    /// or a new incarnation for a directory that has none. Refuses a data
    /// dir of another member.
    pub fn load_or_create(dir: &Path, member: NodeId) -> Result<Self, StoreError> {
        if let Some(found) = Self::read(dir)? {
            if found.member != member {
                return Err(StoreError::Task(format!(
                    "data dir {} belongs to master {}, not master {member}: start it with --id {}, or give master {member} a data dir of its own",
                    dir.display(),
                    found.member,
                    found.member
                )));
            }
            return Ok(found);
        }
        let created =
            DataDirIdentity { member, incarnation: uuid::Uuid::new_v4().simple().to_string(), cluster: None };
        created.write(dir)?;
        Ok(created)
    }
}

/// A peer as its Raft messages present it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerClaim {
    pub member: Option<NodeId>,
    pub incarnation: Option<String>,
    pub cluster: Option<String>,
}

/// Whether this master (of `my_cluster`, with `registry` of member
/// incarnations) may count a Raft message from or to `peer`. Unknowns pass
/// (a cluster being formed, a member not yet registered); contradictions
/// are refused with what to do.
pub fn check_peer(
    my_cluster: Option<&str>,
    registry: &BTreeMap<NodeId, String>,
    peer: &PeerClaim,
) -> Result<(), String> {
    let who = match peer.member {
        Some(m) => format!("master {m}"),
        None => "a master".to_string(),
    };
    if let (Some(mine), Some(theirs)) = (my_cluster, peer.cluster.as_deref()) {
        if mine != theirs {
            return Err(format!(
                "{who} belongs to cluster {theirs}, not to this cluster ({mine}): check its --peers/--join and its data dir"
            ));
        }
    }
    if let (Some(member), Some(incarnation)) = (peer.member, peer.incarnation.as_deref()) {
        if let Some(registered) = registry.get(&member) {
            if registered != incarnation {
                return Err(format!(
                    "{who} has lost or replaced its data dir (incarnation {incarnation}, the cluster knows {registered}): a master without its data may not vote; remove it (corral cluster remove-master {member}) and start it with --join, or restore its data dir"
                ));
            }
        }
    }
    Ok(())
}

/// What this master knows of itself and the others, shared by the Raft
/// client, the Raft server and the registry loop.
#[derive(Debug, Clone)]
pub struct Identity {
    inner: Arc<RwLock<Known>>,
    dir: PathBuf,
}

#[derive(Debug)]
struct Known {
    me: DataDirIdentity,
    /// The replicated registry as last read here.
    registry: BTreeMap<NodeId, String>,
    /// Incarnations heard in Raft messages since the membership last
    /// changed, for the leader to register.
    heard: BTreeMap<NodeId, String>,
    /// The membership those were heard under.
    membership: Option<crate::LogId>,
}

impl Identity {
    pub fn new(me: DataDirIdentity, dir: PathBuf) -> Self {
        let known = Known { me, registry: BTreeMap::new(), heard: BTreeMap::new(), membership: None };
        Identity { inner: Arc::new(RwLock::new(known)), dir }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Known> {
        self.inner.read().expect("identity lock is never poisoned")
    }

    fn write_lock(&self) -> std::sync::RwLockWriteGuard<'_, Known> {
        self.inner.write().expect("identity lock is never poisoned")
    }

    pub fn me(&self) -> DataDirIdentity {
        self.read().me.clone()
    }

    /// How this master presents itself in Raft messages.
    pub fn claim(&self) -> PeerClaim {
        let k = self.read();
        PeerClaim {
            member: Some(k.me.member),
            incarnation: Some(k.me.incarnation.clone()),
            cluster: k.me.cluster.clone(),
        }
    }

    /// The incarnation the registry holds for `member`.
    pub fn registered(&self, member: NodeId) -> Option<String> {
        self.read().registry.get(&member).cloned()
    }

    /// Checks a Raft message from or to `peer`, and remembers its incarnation.
    pub fn admit(&self, peer: &PeerClaim) -> Result<(), String> {
        let verdict = {
            let k = self.read();
            check_peer(k.me.cluster.as_deref(), &k.registry, peer)
        };
        if verdict.is_ok() {
            if let (Some(m), Some(i)) = (peer.member, &peer.incarnation) {
                let mut k = self.write_lock();
                if k.heard.get(&m) != Some(i) {
                    k.heard.insert(m, i.clone());
                }
            }
        }
        verdict
    }

    /// Forgets what was heard under an earlier membership (`log_id` is the
    /// current one's): a master removed and added again must be registered
    /// with the data dir it came back with, never the one it left with.
    pub fn observe_membership(&self, log_id: Option<crate::LogId>) {
        let mut k = self.write_lock();
        if k.membership != log_id {
            k.membership = log_id;
            k.heard.clear();
        }
    }

    /// Incarnations heard but not (or differently) registered: what the
    /// leader should record. This master's own is always included.
    pub fn unregistered(&self) -> BTreeMap<NodeId, String> {
        let k = self.read();
        let mut out: BTreeMap<NodeId, String> = k
            .heard
            .iter()
            .filter(|(m, _)| !k.registry.contains_key(m))
            .map(|(m, i)| (*m, i.clone()))
            .collect();
        if !k.registry.contains_key(&k.me.member) {
            out.insert(k.me.member, k.me.incarnation.clone());
        }
        out
    }

    /// Takes in the registry and cluster id read from the state machine;
    /// persists the cluster id the first time it is learned. Refuses a
    /// cluster id that contradicts the data dir's.
    pub fn refresh(
        &self,
        registry: BTreeMap<NodeId, String>,
        cluster: Option<String>,
    ) -> Result<(), StoreError> {
        let learned = {
            let mut k = self.write_lock();
            k.registry = registry;
            match (&k.me.cluster, cluster) {
                (None, Some(c)) => {
                    k.me.cluster = Some(c);
                    Some(k.me.clone())
                }
                (Some(mine), Some(c)) if *mine != c => {
                    return Err(StoreError::Task(format!(
                        "data dir {} belongs to cluster {mine}, but its store says cluster {c}",
                        self.dir.display()
                    )))
                }
                _ => None,
            }
        };
        if let Some(me) = learned {
            tracing::info!(
                master = me.member,
                cluster = me.cluster.as_deref().unwrap_or_default(),
                "learned the cluster id"
            );
            me.write(&self.dir)?;
        }
        Ok(())
    }
}

/// The cluster id and member registry out of a list of the `/corral/` keys.
pub fn read_registry(kvs: &[crate::KeyValue]) -> (BTreeMap<NodeId, String>, Option<String>) {
    let mut registry = BTreeMap::new();
    let mut cluster = None;
    for kv in kvs {
        if kv.key == CLUSTER_ID_KEY {
            cluster = Some(String::from_utf8_lossy(&kv.value).into_owned());
        } else if let Some(m) = member_of_key(&kv.key) {
            registry.insert(m, String::from_utf8_lossy(&kv.value).into_owned());
        }
    }
    (registry, cluster)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(member: u64, incarnation: &str, cluster: Option<&str>) -> PeerClaim {
        PeerClaim {
            member: Some(member),
            incarnation: Some(incarnation.into()),
            cluster: cluster.map(String::from),
        }
    }

    #[test]
    fn peers_are_checked_against_the_cluster_id_and_the_registry() {
        let registry = BTreeMap::from([(1, "i1".to_string()), (2, "i2".to_string())]);
        let ok = |mine: Option<&str>, peer: PeerClaim| check_peer(mine, &registry, &peer);
        // Known and consistent, or unknown: admitted.
        assert_eq!(ok(Some("c"), claim(1, "i1", Some("c"))), Ok(()));
        assert_eq!(ok(None, claim(1, "i1", Some("c"))), Ok(()));
        assert_eq!(ok(Some("c"), claim(1, "i1", None)), Ok(()));
        assert_eq!(ok(Some("c"), claim(3, "new", Some("c"))), Ok(()), "not registered yet");
        assert_eq!(ok(Some("c"), PeerClaim::default()), Ok(()));
        // Another cluster.
        let err = ok(Some("c"), claim(1, "i1", Some("d"))).unwrap_err();
        assert!(err.starts_with("master 1 belongs to cluster d, not to this cluster (c)"), "{err}");
        // A wiped data dir: a new incarnation under a registered id.
        let err = ok(Some("c"), claim(2, "fresh", None)).unwrap_err();
        assert!(err.starts_with("master 2 has lost or replaced its data dir"), "{err}");
        assert!(err.contains("corral cluster remove-master 2"), "{err}");
    }

    #[test]
    fn the_identity_file_round_trips_and_belongs_to_one_member() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDirIdentity::load_or_create(dir.path(), 3).unwrap();
        assert_eq!((first.member, first.cluster.as_deref()), (3, None));
        assert_eq!(DataDirIdentity::load_or_create(dir.path(), 3).unwrap(), first, "kept across restarts");
        let err = DataDirIdentity::load_or_create(dir.path(), 2).unwrap_err().to_string();
        assert!(err.contains("belongs to master 3, not master 2: start it with --id 3"), "{err}");

        let identity = Identity::new(first.clone(), dir.path().to_path_buf());
        identity.refresh(BTreeMap::new(), Some("c0ffee".into())).unwrap();
        let read = DataDirIdentity::read(dir.path()).unwrap().unwrap();
        assert_eq!(read.cluster.as_deref(), Some("c0ffee"));
        assert_eq!(read.incarnation, first.incarnation);
        assert!(identity.refresh(BTreeMap::new(), Some("other".into())).is_err());

        let other = tempfile::tempdir().unwrap();
        let fresh = DataDirIdentity::load_or_create(other.path(), 3).unwrap();
        assert_ne!(fresh.incarnation, first.incarnation, "an empty data dir is a new incarnation");
    }

    #[test]
    fn heard_incarnations_wait_for_registration_and_contradictions_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let me = DataDirIdentity { member: 1, incarnation: "i1".into(), cluster: Some("c".into()) };
        let identity = Identity::new(me, dir.path().to_path_buf());
        identity.admit(&claim(2, "i2", Some("c"))).unwrap();
        assert_eq!(identity.unregistered(), BTreeMap::from([(1, "i1".to_string()), (2, "i2".to_string())]));
        let registry = BTreeMap::from([(1, "i1".to_string()), (2, "i2".to_string())]);
        identity.refresh(registry, Some("c".into())).unwrap();
        assert!(identity.unregistered().is_empty());
        assert!(identity.admit(&claim(2, "wiped", None)).is_err());
        // Removed (registry entry gone) and added again: only what is heard
        // under the new membership counts.
        identity.admit(&claim(3, "old", Some("c"))).unwrap();
        identity.observe_membership(Some(crate::LogId::new(openraft::CommittedLeaderId::new(1, 1), 9)));
        assert!(identity.unregistered().is_empty(), "3's old incarnation is forgotten");
        identity.admit(&claim(3, "new", Some("c"))).unwrap();
        assert_eq!(identity.unregistered(), BTreeMap::from([(3, "new".to_string())]));
        assert_eq!(identity.registered(2).as_deref(), Some("i2"));
        assert_eq!(member_of_key(&member_key(12)), Some(12));
    }
}
