//! Commands run in a running container: for probes bounded in time and in
//! output ([`exec`]), for `corral exec` streamed ([`exec_stream`]).
//!
//! Docker has no call to kill an exec'd process, so on timeout the process
//! and its descendants are killed by host pid, and only after checking from
//! /proc that the pid belongs to the container (pids get reused). Where the
//! agent does not see the engine's pids (another pid namespace) the process
//! is left to run, and the timeout is still reported.

use std::time::Duration;

use bollard::container::LogOutput;
use bollard::errors::Error as DockerError;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::Docker;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};

use super::translate::{is_not_found, runtime_error};
use crate::runtime::{ExecEvent, ExecOutput, RuntimeError, RuntimeResult};

/// Output kept from one command; the rest is read and dropped so that the
/// command never blocks on a full pipe.
pub const MAX_OUTPUT: usize = 8 * 1024;

/// Creates and starts `command` in container `id` with its output attached:
/// the exec's id and its output stream.
async fn start(
    docker: &Docker,
    id: &str,
    command: &[String],
) -> RuntimeResult<(String, BoxStream<'static, Result<LogOutput, DockerError>>)> {
    let what = format!("running {command:?} in container {id}");
    let options = CreateExecOptions {
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        cmd: Some(command.to_vec()),
        ..Default::default()
    };
    let created = docker.create_exec(id, options).await.map_err(|e| {
        if is_not_found(&e) {
            RuntimeError::NotFound(id.to_string())
        } else {
            runtime_error(&what, e)
        }
    })?;
    let output = match docker.start_exec(&created.id, None).await.map_err(|e| runtime_error(&what, e))? {
        StartExecResults::Attached { output, .. } => output,
        StartExecResults::Detached => futures::stream::empty().boxed(),
    };
    Ok((created.id, output))
}

pub(super) async fn exec(
    docker: &Docker,
    id: &str,
    command: &[String],
    timeout: Duration,
) -> RuntimeResult<ExecOutput> {
    let what = format!("running {command:?} in container {id}");
    let mut exec_id = None;
    let run = async {
        let (created, output) = start(docker, id, command).await?;
        exec_id = Some(created.clone());
        let output = collect(output).await.map_err(|e| runtime_error(&what, e))?;
        let exit_code = exit_code(docker, &created).await.map_err(|e| runtime_error(&what, e))?;
        Ok(ExecOutput { exit_code, output })
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(done) => done,
        Err(_) => {
            let killed = match exec_id {
                Some(exec_id) => kill(docker, &exec_id).await,
                None => false,
            };
            Err(RuntimeError::Engine(format!(
                "{what}: timed out after {timeout:?} ({})",
                if killed { "killed" } else { "could not kill it: it may still run" }
            )))
        }
    }
}

/// The streaming exec behind `corral exec`: output as it comes, then the
/// exit code. Dropping the stream early kills the command (see [`KillOnDrop`]).
pub(super) fn exec_stream(
    docker: Docker,
    id: String,
    command: Vec<String>,
) -> BoxStream<'static, RuntimeResult<ExecEvent>> {
    let what = format!("running {command:?} in container {id}");
    let started = async move {
        let (exec_id, output) = start(&docker, &id, &command).await?;
        let guard = KillOnDrop { docker: docker.clone(), exec_id: Some(exec_id.clone()) };
        let failed = what.clone();
        let events = output.map(move |chunk| match chunk {
            Ok(LogOutput::StdErr { message }) => Ok(ExecEvent::Stderr(message.to_vec())),
            Ok(other) => Ok(ExecEvent::Stdout(other.into_bytes().to_vec())),
            Err(e) => Err(runtime_error(&failed, e)),
        });
        let exit = futures::stream::once(async move {
            let code = exit_code(&docker, &exec_id).await.map_err(|e| runtime_error(&what, e));
            guard.disarm();
            code.map(ExecEvent::Exit)
        });
        Ok::<_, RuntimeError>(events.chain(exit))
    };
    futures::stream::once(started)
        .flat_map(|started| match started {
            Ok(events) => events.boxed(),
            Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
        })
        .boxed()
}

/// Kills an exec'd command whose output nobody reads any more (the client
/// of `corral exec` went away), unless it has finished.
struct KillOnDrop {
    docker: Docker,
    exec_id: Option<String>,
}

impl KillOnDrop {
    /// The command has finished: nothing to kill.
    fn disarm(mut self) {
        self.exec_id = None;
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let (Some(exec_id), Ok(handle)) = (self.exec_id.take(), tokio::runtime::Handle::try_current()) else {
            return;
        };
        let docker = self.docker.clone();
        handle.spawn(async move {
            let killed = kill(&docker, &exec_id).await;
            tracing::debug!(exec = %exec_id, killed, "exec abandoned by its client");
        });
    }
}

async fn collect(
    mut output: impl Stream<Item = Result<LogOutput, DockerError>> + Unpin,
) -> Result<String, DockerError> {
    let mut kept = Vec::new();
    while let Some(chunk) = output.next().await {
        let chunk = chunk?.into_bytes();
        let room = MAX_OUTPUT.saturating_sub(kept.len());
        kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }
    Ok(String::from_utf8_lossy(&kept).into_owned())
}

/// The output ends a moment before the engine records the exit code.
async fn exit_code(docker: &Docker, exec_id: &str) -> Result<i64, DockerError> {
    loop {
        let inspect = docker.inspect_exec(exec_id).await?;
        if inspect.running != Some(true) {
            return Ok(inspect.exit_code.unwrap_or(-1));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Kills the exec'd process tree; whether it did.
async fn kill(docker: &Docker, exec_id: &str) -> bool {
    let Ok(inspect) = docker.inspect_exec(exec_id).await else { return false };
    let (Some(pid), Some(container)) = (inspect.pid, inspect.container_id) else { return false };
    if pid <= 0 || inspect.running != Some(true) {
        return inspect.running == Some(false);
    }
    tokio::task::spawn_blocking(move || kill_tree_in_container(pid as i32, &container)).await.unwrap_or(false)
}

fn kill_tree_in_container(pid: i32, container_id: &str) -> bool {
    let in_container = |p: i32| {
        std::fs::read_to_string(format!("/proc/{p}/cgroup")).is_ok_and(|cg| cg.contains(container_id))
    };
    if !in_container(pid) {
        return false;
    }
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        tree.extend(children(tree[i]));
        i += 1;
    }
    // Parents first, so that none of them forks a replacement child.
    for p in tree.into_iter().filter(|p| in_container(*p)) {
        // SAFETY: kill(2) takes plain integers; the pid was just checked to
        // be in the container's cgroup.
        unsafe { libc::kill(p, libc::SIGKILL) };
    }
    true
}

fn children(pid: i32) -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| list.split_whitespace().filter_map(|p| p.parse().ok()).collect::<Vec<i32>>())
        .collect()
}
