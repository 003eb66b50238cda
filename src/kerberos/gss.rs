//! Safe GSS-API over MIT krb5, loaded at run time: credentials from a keytab or a credential cache, and
//! security contexts for both sides (step with the peer's token, wrap, unwrap).
//!
//! Credentials come from MIT's cred store (`gss_acquire_cred_from`), never from the process environment:
//! each listener and each upstream identity names its own keytab, and an initiator gets a private
//! `MEMORY:` ccache that the library fills from the client keytab by itself (no kinit, no renewal
//! thread). MIT refreshes that TGT only while *acquiring* (halfway through its life, or when it is
//! about to expire), never inside a credential handle it already returned: so an initiator is
//! re-acquired for every new context, which costs nothing while the ccache holds a good TGT. Every
//! failure carries the library's own text (`gss_display_status`).
//!
//! Threads: a [`Credential`] is shared freely (MIT locks its credential records); a context
//! (`super::context`) is `Send` and used by one task at a time (`&mut self`).

use std::ffi::{c_int, CString};
use std::path::Path;
use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use super::context::{ClientContext, ServerContext};
use super::ffi::{self, oid, Api, BufferDesc, KeyValueElement, KeyValueSet, OmUint32};

#[derive(Clone, Debug, thiserror::Error)]
pub enum GssError {
    #[error("cannot load the GSS-API library {library} (Debian package libgssapi-krb5-2): {reason}")]
    Load { library: &'static str, reason: String },
    /// A GSS-API call failed; `message` is the library's major and minor status text.
    #[error("{what}: {message}")]
    Call { what: String, major: u32, minor: u32, message: String },
    #[error("{0}")]
    Invalid(String),
}

/// The loaded library; clones share it.
#[derive(Clone)]
pub struct Gss {
    pub(super) api: Arc<Api>,
}

/// Loaded once per process: the library stays mapped for the life of the process anyway.
static LOADED: OnceLock<Result<Arc<Api>, String>> = OnceLock::new();

/// Makes each initiator's `MEMORY:` ccache name unique within the process (MEMORY ccaches are shared by
/// name process-wide).
static CCACHE_SEQ: AtomicU64 = AtomicU64::new(0);

impl Gss {
    /// Opens `libgssapi_krb5.so.2`; the error names the library and the package that has it.
    pub fn load() -> Result<Gss, GssError> {
        match LOADED.get_or_init(|| Api::load().map(Arc::new)) {
            Ok(api) => Ok(Gss { api: api.clone() }),
            Err(reason) => Err(GssError::Load { library: ffi::LIBRARY, reason: reason.clone() }),
        }
    }

    /// Acceptor credentials from `keytab`: for `principal` only, or (`None`) for any key in the keytab.
    /// The same credentials accept raw Kerberos (SASL GSSAPI) and SPNEGO (HTTP Negotiate) tokens.
    pub fn acceptor(&self, keytab: &Path, principal: Option<&str>) -> Result<Credential, GssError> {
        let keytab = format!("FILE:{}", path_text(keytab)?);
        let what = match principal {
            Some(p) => format!("acceptor {p} from {keytab}"),
            None => format!("acceptor (any principal) from {keytab}"),
        };
        self.acquire(principal, ffi::GSS_C_ACCEPT, &[("keytab", &keytab)], what, false)
    }

    /// Initiator credentials for `principal` from `client_keytab`, in a private `MEMORY:` ccache: the
    /// library gets a TGT from the keytab when it needs one and again before it expires.
    pub fn initiator_with_keytab(&self, principal: &str, client_keytab: &Path) -> Result<Credential, GssError> {
        let keytab = format!("FILE:{}", path_text(client_keytab)?);
        let seq = CCACHE_SEQ.fetch_add(1, Ordering::Relaxed);
        let ccache = format!("MEMORY:hs2-proxy-{}-{seq}", std::process::id());
        let store = [("client_keytab", keytab.as_str()), ("ccache", ccache.as_str())];
        self.acquire(Some(principal), ffi::GSS_C_INITIATE, &store, format!("initiator {principal} from {keytab}"), true)
    }

    /// Initiator credentials from an existing ccache (`FILE:/tmp/krb5cc_1000`, a kinit'd user): its
    /// default principal unless `principal` is given. Nothing renews these tickets.
    pub fn initiator_from_ccache(&self, ccache: &str, principal: Option<&str>) -> Result<Credential, GssError> {
        let what = format!("initiator from ccache {ccache}");
        // Re-acquired per context too: a ccache renewed outside (kinit -R, k5start) is then followed.
        self.acquire(principal, ffi::GSS_C_INITIATE, &[("ccache", ccache)], what, true)
    }

    fn acquire(
        &self,
        principal: Option<&str>,
        usage: c_int,
        store: &[(&str, &str)],
        what: String,
        reacquire: bool,
    ) -> Result<Credential, GssError> {
        let name = principal.map(|p| self.import_principal(p)).transpose()?;
        let texts: Vec<(CString, CString)> =
            store.iter().map(|(k, v)| Ok((c_string(k)?, c_string(v)?))).collect::<Result<_, GssError>>()?;
        let mut elements: Vec<KeyValueElement> =
            texts.iter().map(|(k, v)| KeyValueElement { key: k.as_ptr(), value: v.as_ptr() }).collect();
        let set = KeyValueSet { count: elements.len() as OmUint32, elements: elements.as_mut_ptr() };
        let mut cred: ffi::Cred = ptr::null_mut();
        let mut minor = 0;
        // SAFETY: every pointer is valid for the call; the strings outlive it; outputs are ours to release.
        let major = unsafe {
            (self.api.acquire_cred_from)(
                &mut minor,
                name.as_ref().map_or(ptr::null_mut(), |n| n.raw),
                ffi::GSS_C_INDEFINITE,
                ptr::null_mut(),
                usage,
                &set,
                &mut cred,
                ptr::null_mut(),
                ptr::null_mut(),
            )
        };
        self.check(&format!("acquiring Kerberos credentials ({what})"), major, minor)?;
        let spec = reacquire.then(|| Spec {
            principal: principal.map(str::to_string),
            store: store.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            lock: Mutex::new(()),
        });
        Ok(Credential { inner: Arc::new(CredInner { gss: self.clone(), raw: cred, what, spec }) })
    }

    /// The same credentials again: MIT refreshes an initiator's TGT only while acquiring.
    fn reacquire(&self, spec: &Spec, what: &str) -> Result<Credential, GssError> {
        let store: Vec<(&str, &str)> = spec.store.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        // A poisoned lock guards nothing broken (the ccache is the library's): go on.
        let _one_at_a_time = spec.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.acquire(spec.principal.as_deref(), ffi::GSS_C_INITIATE, &store, what.to_string(), true)
    }

    /// A Kerberos principal name (`impala/host@REALM`; without `@REALM` the default realm).
    pub(super) fn import_principal(&self, principal: &str) -> Result<OwnedName, GssError> {
        let mut desc = ffi::oid_desc(oid::KRB5_NT_PRINCIPAL_NAME);
        let mut buf = BufferDesc::borrowing(principal.as_bytes());
        let mut raw: ffi::Name = ptr::null_mut();
        let mut minor = 0;
        // SAFETY: the input buffer and OID are valid for the call; the output name is released by OwnedName.
        let major = unsafe { (self.api.import_name)(&mut minor, &mut buf, &mut desc, &mut raw) };
        self.check("importing a principal name", major, minor)
            .map_err(|e| GssError::Invalid(format!("{principal:?} is not a Kerberos principal name: {e}")))?;
        Ok(OwnedName { gss: self.clone(), raw })
    }

    /// A name as text (`alice@EXAMPLE.TEST`).
    pub(super) fn display_name(&self, name: ffi::Name) -> Result<String, GssError> {
        let mut buf = BufferDesc::empty();
        let mut minor = 0;
        // SAFETY: `name` is a valid name; the output buffer is released by take_buffer.
        let major = unsafe { (self.api.display_name)(&mut minor, name, &mut buf, ptr::null_mut()) };
        self.check("displaying a name", major, minor)?;
        Ok(String::from_utf8_lossy(&self.take_buffer(&mut buf)).into_owned())
    }

    /// Copies a buffer the library allocated and frees it.
    pub(super) fn take_buffer(&self, buf: &mut BufferDesc) -> Vec<u8> {
        let bytes = if buf.value.is_null() || buf.length == 0 {
            Vec::new()
        } else {
            // SAFETY: the library filled `value` with `length` readable bytes.
            unsafe { std::slice::from_raw_parts(buf.value as *const u8, buf.length) }.to_vec()
        };
        let mut minor = 0;
        // SAFETY: the buffer came from the library (or is empty, which release_buffer accepts).
        unsafe { (self.api.release_buffer)(&mut minor, buf) };
        bytes
    }

    /// `Ok(major)` unless `major` is an error; the error text is the library's.
    pub(super) fn check(&self, what: &str, major: OmUint32, minor: OmUint32) -> Result<OmUint32, GssError> {
        if major & ffi::GSS_ERROR_MASK == 0 {
            return Ok(major);
        }
        let major_text = self.status_text(major & ffi::GSS_ERROR_MASK, ffi::GSS_C_GSS_CODE);
        let minor_text = if minor == 0 { String::new() } else { self.status_text(minor, ffi::GSS_C_MECH_CODE) };
        // MIT's major text for GSS_S_FAILURE only says to read the minor one: then the minor says it all.
        let message = match (major_text.as_str(), minor_text.as_str()) {
            (m, "") => m.to_string(),
            (m, n) if m.starts_with("Unspecified GSS failure") => n.to_string(),
            (m, n) => format!("{m} ({n})"),
        };
        Err(GssError::Call { what: what.to_string(), major, minor, message })
    }

    fn status_text(&self, code: OmUint32, kind: c_int) -> String {
        let mut parts = Vec::new();
        let mut more: OmUint32 = 0;
        let mut mech = ffi::oid_desc(oid::KRB5_MECH);
        // A status may have several messages; the library bounds them, and so do we.
        for _ in 0..8 {
            let mut buf = BufferDesc::empty();
            let mut minor = 0;
            // SAFETY: valid pointers; the output buffer is released by take_buffer.
            let major = unsafe { (self.api.display_status)(&mut minor, code, kind, &mut mech, &mut more, &mut buf) };
            if major & ffi::GSS_ERROR_MASK != 0 {
                break;
            }
            parts.push(String::from_utf8_lossy(&self.take_buffer(&mut buf)).into_owned());
            if more == 0 {
                break;
            }
        }
        if parts.is_empty() {
            format!("status {code:#x}")
        } else {
            parts.join("; ")
        }
    }
}

fn c_string(text: &str) -> Result<CString, GssError> {
    CString::new(text).map_err(|_| GssError::Invalid(format!("{text:?} contains a NUL byte")))
}

fn path_text(path: &Path) -> Result<&str, GssError> {
    path.to_str().ok_or_else(|| GssError::Invalid(format!("{} is not valid UTF-8", path.display())))
}

pub(super) struct OwnedName {
    pub(super) gss: Gss,
    pub(super) raw: ffi::Name,
}

impl Drop for OwnedName {
    fn drop(&mut self) {
        if self.raw.is_null() {
            return;
        }
        let mut minor = 0;
        // SAFETY: the name came from import_name or accept_sec_context and is released once.
        unsafe { (self.gss.api.release_name)(&mut minor, &mut self.raw) };
    }
}

// SAFETY: a GSS name is plain data inside the library, not tied to a thread; it is never shared (no Sync).
unsafe impl Send for OwnedName {}

/// Credentials (acceptor or initiator); clones share them.
#[derive(Clone)]
pub struct Credential {
    pub(super) inner: Arc<CredInner>,
}

pub(super) struct CredInner {
    pub(super) gss: Gss,
    pub(super) raw: ffi::Cred,
    /// What they are, for logs and errors (no secret in it: principal and keytab path).
    what: String,
    /// How to acquire them again (initiators only).
    spec: Option<Spec>,
}

/// The arguments of an acquisition (no secret: principal, keytab path, ccache name).
struct Spec {
    principal: Option<String>,
    store: Vec<(String, String)>,
    /// One acquisition at a time: a refresh rewrites the shared MEMORY ccache, which a concurrent
    /// acquisition must not read half-written.
    lock: Mutex<()>,
}

// SAFETY: MIT's krb5 credential records carry their own mutex and every GSS call on them takes it
// (krb5_gss_cred_id_rec.lock), so one handle may be used from several threads at once.
unsafe impl Send for CredInner {}
unsafe impl Sync for CredInner {}

impl Drop for CredInner {
    fn drop(&mut self) {
        let mut minor = 0;
        // SAFETY: acquired by acquire_cred_from, released once; no context outlives it (they hold the Arc).
        unsafe { (self.gss.api.release_cred)(&mut minor, &mut self.raw) };
    }
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credential({})", self.inner.what)
    }
}

impl Credential {
    /// A fresh acceptor context (one per client handshake or HTTP request).
    pub fn server_context(&self) -> ServerContext {
        ServerContext::new(self.clone())
    }

    /// A fresh initiator context for the service `target` (`hive/host@REALM`), raw Kerberos 5 with
    /// mutual authentication, as SASL GSSAPI wants. The credentials are acquired again first, so that an
    /// expiring TGT is replaced (from the client keytab) before it is needed. Blocking: it may ask the
    /// KDC for a TGT (`sasl::client_handshake_gssapi` calls it on the blocking pool).
    pub fn client_context(&self, target: &str) -> Result<ClientContext, GssError> {
        let gss = &self.inner.gss;
        let cred = match &self.inner.spec {
            Some(spec) => gss.reacquire(spec, &self.inner.what)?,
            None => self.clone(),
        };
        let name = gss.import_principal(target)?;
        Ok(ClientContext::new(cred, name, target))
    }
}
