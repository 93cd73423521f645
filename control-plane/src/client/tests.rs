//! The client's retries against a scripted Store server: a write attempt
//! that got no answer makes a later refusal ambiguous; a refused
//! connection does not.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use futures::Stream;
use raft_store::transport::TcpDialer;
use tonic::{Request, Response, Status};

use super::*;
use crate::error::conflict_status;
use crate::pb::store_server::{Store, StoreServer};

/// Answers each Put with the next scripted result; everything else is unimplemented.
#[derive(Clone, Default)]
struct Scripted {
    puts: Arc<Mutex<VecDeque<Result<u64, Status>>>>,
    seen: Arc<Mutex<u32>>,
}

type Events = Pin<Box<dyn Stream<Item = Result<pb::WatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Store for Scripted {
    async fn get(&self, _: Request<pb::GetRequest>) -> Result<Response<pb::GetResponse>, Status> {
        Err(Status::unimplemented("not scripted"))
    }
    async fn list(&self, _: Request<pb::ListRequest>) -> Result<Response<pb::ListResponse>, Status> {
        Err(Status::unimplemented("not scripted"))
    }
    async fn put(&self, _: Request<pb::PutRequest>) -> Result<Response<pb::WriteResponse>, Status> {
        *self.seen.lock().unwrap() += 1;
        let next = self.puts.lock().unwrap().pop_front().expect("a scripted answer");
        next.map(|revision| Response::new(pb::WriteResponse { revision, ..Default::default() }))
    }
    async fn delete(&self, _: Request<pb::DeleteRequest>) -> Result<Response<pb::WriteResponse>, Status> {
        Err(Status::unimplemented("not scripted"))
    }
    async fn txn(&self, _: Request<pb::TxnRequest>) -> Result<Response<pb::WriteResponse>, Status> {
        Err(Status::unimplemented("not scripted"))
    }
    type WatchStream = Events;
    async fn watch(&self, _: Request<pb::WatchRequest>) -> Result<Response<Events>, Status> {
        Err(Status::unimplemented("not scripted"))
    }
}

/// Serves `script` on a loopback port; returns its address.
async fn serve(script: Scripted) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(StoreServer::new(script))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    addr
}

fn client(addrs: Vec<String>) -> CorralClient {
    CorralClient::new(addrs, Arc::new(TcpDialer::default()))
        .with_timeout(Duration::from_secs(5))
        .with_backoff(Duration::from_millis(10), Duration::from_millis(20))
}

/// A loopback address nothing listens on.
async fn closed_port() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().to_string()
}

#[tokio::test]
async fn a_refusal_after_an_unanswered_write_attempt_is_reported_as_unknown() {
    let script = Scripted::default();
    script.puts.lock().unwrap().extend([
        Err(Status::unknown("connection reset while the leader was proposing")),
        Err(conflict_status("key \"k\" is at revision 7, not 6")),
    ]);
    let addr = serve(script.clone()).await;
    let err = client(vec![addr]).put(b"k", b"v", Some(6)).await.unwrap_err();
    assert_eq!(*script.seen.lock().unwrap(), 2);
    let ClientError::Unknown(m) = &err else { panic!("expected an unknown outcome, got {err:?}") };
    assert!(m.contains("may or may not have been applied") && m.contains("connection reset"), "{m}");
    assert!(m.contains("revision 7") && m.contains("read it back"), "{m}");
}

#[tokio::test]
async fn a_refused_connection_carried_nothing_so_the_refusal_stands() {
    let script = Scripted::default();
    script.puts.lock().unwrap().push_back(Err(conflict_status("key \"k\" is at revision 7, not 6")));
    let addr = serve(script).await;
    let err = client(vec![closed_port().await, addr]).put(b"k", b"v", Some(6)).await.unwrap_err();
    assert!(matches!(&err, ClientError::Conflict(m) if m.contains("revision 7")), "{err:?}");
}

#[tokio::test]
async fn a_master_that_proposed_nothing_leaves_the_refusal_standing() {
    let script = Scripted::default();
    script.puts.lock().unwrap().extend([
        Err(crate::error::not_applied(Status::unavailable("this master is not the leader; retry"))),
        Err(conflict_status("key \"k\" is at revision 7, not 6")),
    ]);
    let addr = serve(script).await;
    let err = client(vec![addr]).put(b"k", b"v", Some(6)).await.unwrap_err();
    assert!(matches!(&err, ClientError::Conflict(m) if m.contains("revision 7")), "{err:?}");
}

#[tokio::test]
async fn a_write_that_no_master_took_times_out_as_such() {
    let script = Scripted::default();
    let refusal = || Err(crate::error::not_applied(Status::unavailable("no leader is known yet; retry")));
    script.puts.lock().unwrap().extend((0..1000).map(|_| refusal()));
    let addr = serve(script).await;
    let err =
        client(vec![addr]).with_timeout(Duration::from_millis(300)).put(b"k", b"v", None).await.unwrap_err();
    assert!(matches!(&err, ClientError::Timeout(m) if m.contains("no leader")), "{err:?}");
}

#[tokio::test]
async fn a_retried_write_that_succeeds_is_simply_acknowledged() {
    let script = Scripted::default();
    script.puts.lock().unwrap().extend([Err(Status::unavailable("not the leader; retry")), Ok(9)]);
    let addr = serve(script).await;
    assert_eq!(client(vec![addr]).put(b"k", b"v", None).await.unwrap(), Revision(9));
}

#[tokio::test]
async fn a_read_never_turns_into_an_unknown_outcome() {
    // Reads are not scripted here: an unimplemented answer is final and stays what it is.
    let addr = serve(Scripted::default()).await;
    let err = client(vec![addr]).get(b"k", false).await.unwrap_err();
    assert!(matches!(&err, ClientError::Other(m) if m.contains("not scripted")), "{err:?}");
}
