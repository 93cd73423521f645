//! Images without a registry: `corral/busybox:1` (web replicas, probes,
//! CPU burners) and `corral/pause:1` (pod sandboxes), built from Debian's
//! static busybox through the engine's build API with an in-memory tar
//! context. `scripts/images` does the same with `docker build`.

use std::collections::HashMap;
use std::path::Path;

use bollard::query_parameters::{BuildImageOptionsBuilder, TagImageOptionsBuilder};
use bollard::{body_full, Docker};
use futures::StreamExt;

use super::translate::{is_not_found, runtime_error};
use crate::runtime::{labels, RuntimeError, RuntimeResult};

pub const BUSYBOX_IMAGE: &str = "corral/busybox:1";
/// The same content as [`BUSYBOX_IMAGE`], tagged a second time: the sandbox
/// runs its own pause command (see `translate::sandbox_command`).
pub const PAUSE_IMAGE: &str = "corral/pause:1";

/// Where Debian's `busybox-static` installs the binary.
pub const BUSYBOX_PATH: &str = "/bin/busybox";

const DOCKERFILE: &str = "FROM scratch\n\
COPY busybox /bin/busybox\n\
RUN [\"/bin/busybox\",\"--install\",\"-s\",\"/bin\"]\n\
ENV PATH=/bin\n";

/// Builds [`BUSYBOX_IMAGE`] and tags it [`PAUSE_IMAGE`], each only when
/// missing. Safe to run concurrently: a second build of the same context
/// hits the engine's cache.
pub async fn ensure_busybox_images(docker: &Docker) -> RuntimeResult<()> {
    ensure_busybox_images_from(docker, Path::new(BUSYBOX_PATH)).await
}

/// [`ensure_busybox_images`] with the busybox binary taken from `busybox`.
pub async fn ensure_busybox_images_from(docker: &Docker, busybox: &Path) -> RuntimeResult<()> {
    if !image_exists(docker, BUSYBOX_IMAGE).await? {
        let binary = read_static_busybox(busybox).await?;
        build(docker, BUSYBOX_IMAGE, build_context(&binary)?).await?;
        tracing::info!(image = BUSYBOX_IMAGE, "built image");
    }
    if !image_exists(docker, PAUSE_IMAGE).await? {
        let (repo, tag) = PAUSE_IMAGE.split_once(':').expect("PAUSE_IMAGE has a tag");
        let options = TagImageOptionsBuilder::default().repo(repo).tag(tag).build();
        docker
            .tag_image(BUSYBOX_IMAGE, Some(options))
            .await
            .map_err(|e| runtime_error(&format!("tagging {BUSYBOX_IMAGE} as {PAUSE_IMAGE}"), e))?;
        tracing::info!(image = PAUSE_IMAGE, "tagged image");
    }
    Ok(())
}

pub(super) async fn image_exists(docker: &Docker, image: &str) -> RuntimeResult<bool> {
    match docker.inspect_image(image).await {
        Ok(_) => Ok(true),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(e) => Err(runtime_error(&format!("inspecting image {image}"), e)),
    }
}

async fn read_static_busybox(path: &Path) -> RuntimeResult<Vec<u8>> {
    let binary = tokio::fs::read(path).await.map_err(|e| {
        RuntimeError::Engine(format!(
            "cannot read {}: {e}; install it with `apt-get install busybox-static`",
            path.display()
        ))
    })?;
    if is_dynamically_linked(&binary) {
        return Err(RuntimeError::Engine(format!(
            "{} is dynamically linked and cannot run in an image FROM scratch; \
             install the static one with `apt-get install busybox-static`",
            path.display()
        )));
    }
    Ok(binary)
}

/// Whether an ELF64 little-endian binary asks for a dynamic loader (has a
/// PT_INTERP program header). Anything else is left to the build to judge.
pub fn is_dynamically_linked(elf: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    let is_elf64_le = elf.len() >= 64 && elf[..4] == *b"\x7fELF" && elf[4] == 2 && elf[5] == 1;
    if !is_elf64_le {
        return false;
    }
    let u16_at = |at: usize| u16::from_le_bytes([elf[at], elf[at + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().expect("8 bytes")) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    (0..phnum).any(|i| {
        let at = phoff.saturating_add(i.saturating_mul(phentsize));
        elf.get(at..at + 4).is_some_and(|t| u32::from_le_bytes(t.try_into().expect("4 bytes")) == PT_INTERP)
    })
}

/// The build context: the Dockerfile and the busybox binary, as a tar.
pub fn build_context(busybox: &[u8]) -> RuntimeResult<Vec<u8>> {
    let fail = |e: std::io::Error| RuntimeError::Engine(format!("assembling the image build context: {e}"));
    let mut tar = tar::Builder::new(Vec::new());
    for (name, mode, data) in [("Dockerfile", 0o644, DOCKERFILE.as_bytes()), ("busybox", 0o755, busybox)] {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(mode);
        header.set_cksum();
        tar.append_data(&mut header, name, data).map_err(fail)?;
    }
    tar.into_inner().map_err(fail)
}

async fn build(docker: &Docker, image: &str, context: Vec<u8>) -> RuntimeResult<()> {
    let image_labels: HashMap<&str, &str> = [(labels::OWNED, "true")].into();
    let options = BuildImageOptionsBuilder::default()
        .dockerfile("Dockerfile")
        .t(image)
        .rm(true)
        .forcerm(true)
        .labels(&image_labels)
        .build();
    let what = format!("building image {image}");
    let mut progress = docker.build_image(options, None, Some(body_full(context.into())));
    while let Some(step) = progress.next().await {
        let step = step.map_err(|e| runtime_error(&what, e))?;
        if let Some(message) = step.error_detail.and_then(|d| d.message) {
            return Err(RuntimeError::Engine(format!("{what}: {message}")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elf_with_program_headers(types: &[u32]) -> Vec<u8> {
        let mut elf = vec![0u8; 64 + 56 * types.len()];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2; // 64-bit
        elf[5] = 1; // little-endian
        elf[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        elf[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        elf[0x38..0x3a].copy_from_slice(&(types.len() as u16).to_le_bytes());
        for (i, t) in types.iter().enumerate() {
            elf[64 + 56 * i..64 + 56 * i + 4].copy_from_slice(&t.to_le_bytes());
        }
        elf
    }

    #[test]
    fn a_binary_with_an_interpreter_is_dynamic() {
        assert!(is_dynamically_linked(&elf_with_program_headers(&[6, 3, 1])));
        assert!(!is_dynamically_linked(&elf_with_program_headers(&[1, 1, 4])));
        assert!(!is_dynamically_linked(b"#!/bin/sh\necho not an ELF\n"));
    }

    #[test]
    fn the_host_busybox_is_static_when_installed() {
        let Ok(binary) = std::fs::read(BUSYBOX_PATH) else { return };
        assert!(!is_dynamically_linked(&binary), "{BUSYBOX_PATH}: install busybox-static");
    }

    #[test]
    fn build_context_holds_dockerfile_and_executable_busybox() {
        let tar_bytes = build_context(b"binary").unwrap();
        let mut archive = tar::Archive::new(tar_bytes.as_slice());
        let entries: Vec<(String, u32, u64)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (e.path().unwrap().display().to_string(), h.mode().unwrap(), h.size().unwrap())
            })
            .collect();
        assert_eq!(
            entries,
            vec![("Dockerfile".into(), 0o644, DOCKERFILE.len() as u64), ("busybox".into(), 0o755, 6)]
        );
        assert!(DOCKERFILE.starts_with("FROM scratch\n"));
    }
}
