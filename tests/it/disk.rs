//! An in-memory disk for redb (a `StorageBackend`) that can break at a chosen write or sync and
//! keeps the image a crash would leave: everything up to the last successful sync.

use std::io;
use std::sync::{Arc, Mutex};

use redb::StorageBackend;

#[derive(Debug, Default)]
pub struct Image {
    /// What the process sees (written, maybe not synced).
    current: Vec<u8>,
    /// What survives a crash: `current` as of the last successful sync.
    durable: Vec<u8>,
    writes: u64,
    syncs: u64,
    fail_write_at: Option<u64>,
    fail_sync_at: Option<u64>,
    failed: bool,
}

/// A disk that breaks at a chosen write or sync and stays broken.
#[derive(Debug, Clone)]
pub struct FaultyDisk(Arc<Mutex<Image>>);

impl FaultyDisk {
    pub fn new(initial: Vec<u8>, fail_write_at: Option<u64>, fail_sync_at: Option<u64>) -> FaultyDisk {
        FaultyDisk(Arc::new(Mutex::new(Image { current: initial.clone(), durable: initial, fail_write_at, fail_sync_at, ..Image::default() })))
    }

    pub fn crash_image(&self) -> Vec<u8> {
        self.0.lock().unwrap().durable.clone()
    }
}

fn broken() -> io::Error {
    io::Error::other("injected storage fault")
}

impl StorageBackend for FaultyDisk {
    fn len(&self) -> Result<u64, io::Error> {
        Ok(self.0.lock().unwrap().current.len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        let image = self.0.lock().unwrap();
        let start = offset as usize;
        let end = start
            .checked_add(out.len())
            .filter(|end| *end <= image.current.len())
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end"))?;
        out.copy_from_slice(&image.current[start..end]);
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        let mut image = self.0.lock().unwrap();
        if image.failed {
            return Err(broken());
        }
        image.current.resize(len as usize, 0);
        Ok(())
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        let mut image = self.0.lock().unwrap();
        image.syncs += 1;
        if image.failed || image.fail_sync_at == Some(image.syncs) {
            image.failed = true;
            return Err(broken());
        }
        image.durable = image.current.clone();
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        let mut image = self.0.lock().unwrap();
        image.writes += 1;
        if image.failed || image.fail_write_at == Some(image.writes) {
            image.failed = true;
            return Err(broken());
        }
        let end = offset as usize + data.len();
        if image.current.len() < end {
            image.current.resize(end, 0);
        }
        image.current[offset as usize..end].copy_from_slice(data);
        Ok(())
    }
}
