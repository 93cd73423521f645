//! A local copy of every object of one kind, kept by list + watch: the
//! agent's view of its pods, services and endpoints. When the watch breaks
//! (a master dies, the history was compacted), it lists again and resumes,
//! with back-off; readers always see a whole, consistent map.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use control_plane::api::Object;
use control_plane::CorralClient;
use futures::StreamExt;
use raft_store::Revision;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Objects by `namespace/name`.
pub type Objects = Arc<BTreeMap<String, Object>>;

pub fn object_key(obj: &Object) -> String {
    format!("{}/{}", obj.namespace(), obj.meta().name)
}

/// Starts reflecting `kind` (a plural such as "pods"); the receiver sees
/// every change. `synced` is false until the first list arrived.
pub fn reflect(
    client: CorralClient,
    kind: &'static str,
    cancel: CancellationToken,
) -> watch::Receiver<Reflected> {
    let (tx, rx) = watch::channel(Reflected::default());
    tokio::spawn(async move { run(client, kind, tx, cancel).await });
    rx
}

/// What a reflector holds.
#[derive(Debug, Clone, Default)]
pub struct Reflected {
    pub objects: Objects,
    pub synced: bool,
}

impl Reflected {
    /// The Services held (for a reflector of "services").
    pub fn services(&self) -> Vec<control_plane::api::Service> {
        self.objects
            .values()
            .filter_map(|o| if let Object::Service(s) = o { Some(s.clone()) } else { None })
            .collect()
    }

    /// The Endpoints held (for a reflector of "endpoints").
    pub fn endpoints(&self) -> Vec<control_plane::api::Endpoints> {
        self.objects
            .values()
            .filter_map(|o| if let Object::Endpoints(e) = o { Some(e.clone()) } else { None })
            .collect()
    }
}

async fn run(
    client: CorralClient,
    kind: &'static str,
    tx: watch::Sender<Reflected>,
    cancel: CancellationToken,
) {
    let mut delay = Duration::from_millis(100);
    loop {
        let result = tokio::select! {
            _ = cancel.cancelled() => return,
            r = list_and_watch(&client, kind, &tx, &mut delay) => r,
        };
        if let Err(e) = result {
            tracing::debug!(kind, error = %e, "watch broke; listing again");
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

async fn list_and_watch(
    client: &CorralClient,
    kind: &'static str,
    tx: &watch::Sender<Reflected>,
    delay: &mut Duration,
) -> Result<(), control_plane::ClientError> {
    let (items, rev) = client.list_objects(kind, "", "").await?;
    let mut map: BTreeMap<String, Object> = items.into_iter().map(|o| (object_key(&o), o)).collect();
    tx.send_replace(Reflected { objects: Arc::new(map.clone()), synced: true });
    let mut stream = Box::pin(client.watch_objects(kind, "", Some(Revision(rev.0 + 1))).await?);
    *delay = Duration::from_millis(100);
    while let Some(batch) = stream.next().await {
        for e in batch? {
            let key = object_key(&e.object);
            match e.type_.as_str() {
                "DELETED" => {
                    map.remove(&key);
                }
                _ => {
                    map.insert(key, e.object);
                }
            }
        }
        tx.send_replace(Reflected { objects: Arc::new(map.clone()), synced: true });
    }
    Err(control_plane::ClientError::Other("the watch ended".into()))
}
