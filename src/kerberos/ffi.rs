//! The C interface of MIT's GSS-API library, declared by hand (RFC 2744 plus MIT's `gss_acquire_cred_from`
//! from `gssapi_ext.h`) and opened at run time with `libloading`. No safety here: [`super::gss`] wraps it.
//!
//! Why at run time: `libgssapi_krb5.so.2` is on every Debian machine, so the proxy builds without any
//! `-dev` package or libclang, and one release binary serves Kerberized and plain clusters alike; a machine
//! without the library gets a clear error only when Kerberos is configured.
//!
//! Layouts are those of MIT krb5 on LP64 Linux (`gssapi/gssapi.h`): `OM_uint32` is `uint32_t`, lengths of
//! buffers and OID sets are `size_t`, handles are opaque pointers.

#![allow(clippy::upper_case_acronyms)]

use std::ffi::{c_char, c_int, c_void};

use libloading::Library;

/// `OM_uint32`.
pub type OmUint32 = u32;

/// `gss_buffer_desc`: bytes owned either by us (input) or by the library (output, freed with
/// `gss_release_buffer`).
#[repr(C)]
pub struct BufferDesc {
    pub length: usize,
    pub value: *mut c_void,
}

impl BufferDesc {
    /// `GSS_C_EMPTY_BUFFER`, for the library to fill.
    pub fn empty() -> BufferDesc {
        BufferDesc { length: 0, value: std::ptr::null_mut() }
    }

    /// A view of `bytes` for input arguments; the library only reads it.
    pub fn borrowing(bytes: &[u8]) -> BufferDesc {
        BufferDesc { length: bytes.len(), value: bytes.as_ptr() as *mut c_void }
    }
}

/// `gss_OID_desc`.
#[repr(C)]
pub struct OidDesc {
    pub length: OmUint32,
    pub elements: *mut c_void,
}

/// `gss_OID_set_desc`.
#[repr(C)]
pub struct OidSetDesc {
    pub count: usize,
    pub elements: *mut OidDesc,
}

/// `gss_key_value_element_desc` (MIT cred store entry).
#[repr(C)]
pub struct KeyValueElement {
    pub key: *const c_char,
    pub value: *const c_char,
}

/// `gss_key_value_set_desc` (MIT cred store).
#[repr(C)]
pub struct KeyValueSet {
    pub count: OmUint32,
    pub elements: *mut KeyValueElement,
}

/// Opaque `struct gss_name_struct`.
pub enum NameStruct {}
/// Opaque `struct gss_cred_id_struct`.
pub enum CredStruct {}
/// Opaque `struct gss_ctx_id_struct`.
pub enum CtxStruct {}
/// Opaque `struct gss_channel_bindings_struct` (we always pass none).
pub enum ChannelBindings {}

pub type Name = *mut NameStruct;
pub type Cred = *mut CredStruct;
pub type Ctx = *mut CtxStruct;
pub type Oid = *mut OidDesc;

// Status codes and flags (gssapi.h).
pub const GSS_S_COMPLETE: OmUint32 = 0;
pub const GSS_S_CONTINUE_NEEDED: OmUint32 = 1;
/// `GSS_ERROR(x)`: the calling and routine error fields.
pub const GSS_ERROR_MASK: OmUint32 = 0xffff_0000;
pub const GSS_C_GSS_CODE: c_int = 1;
pub const GSS_C_MECH_CODE: c_int = 2;
pub const GSS_C_INDEFINITE: OmUint32 = 0xffff_ffff;
pub const GSS_C_INITIATE: c_int = 1;
pub const GSS_C_ACCEPT: c_int = 2;
pub const GSS_C_MUTUAL_FLAG: OmUint32 = 2;
pub const GSS_C_QOP_DEFAULT: OmUint32 = 0;

/// DER bodies of the OIDs we pass (the library compares OIDs by value, so our own copies do).
pub mod oid {
    /// 1.2.840.113554.1.2.2: the Kerberos 5 mechanism (SASL GSSAPI speaks it raw, RFC 4752).
    pub const KRB5_MECH: &[u8] = b"\x2a\x86\x48\x86\xf7\x12\x01\x02\x02";
    /// 1.2.840.113554.1.2.2.1: `GSS_KRB5_NT_PRINCIPAL_NAME`, names like `impala/host@REALM`.
    pub const KRB5_NT_PRINCIPAL_NAME: &[u8] = b"\x2a\x86\x48\x86\xf7\x12\x01\x02\x02\x01";
}

/// The library file opened; its SONAME on Debian and most Linux distributions.
pub const LIBRARY: &str = "libgssapi_krb5.so.2";

type MinorPtr = *mut OmUint32;

/// The functions we call, resolved once. The `Library` is kept so the pointers stay valid.
pub struct Api {
    pub acquire_cred_from: unsafe extern "C" fn(
        MinorPtr,
        Name,
        OmUint32,
        *mut OidSetDesc,
        c_int,
        *const KeyValueSet,
        *mut Cred,
        *mut *mut OidSetDesc,
        *mut OmUint32,
    ) -> OmUint32,
    pub release_cred: unsafe extern "C" fn(MinorPtr, *mut Cred) -> OmUint32,
    pub init_sec_context: unsafe extern "C" fn(
        MinorPtr,
        Cred,
        *mut Ctx,
        Name,
        Oid,
        OmUint32,
        OmUint32,
        *mut ChannelBindings,
        *mut BufferDesc,
        *mut Oid,
        *mut BufferDesc,
        *mut OmUint32,
        *mut OmUint32,
    ) -> OmUint32,
    pub accept_sec_context: unsafe extern "C" fn(
        MinorPtr,
        *mut Ctx,
        Cred,
        *mut BufferDesc,
        *mut ChannelBindings,
        *mut Name,
        *mut Oid,
        *mut BufferDesc,
        *mut OmUint32,
        *mut OmUint32,
        *mut Cred,
    ) -> OmUint32,
    pub delete_sec_context: unsafe extern "C" fn(MinorPtr, *mut Ctx, *mut BufferDesc) -> OmUint32,
    pub wrap:
        unsafe extern "C" fn(MinorPtr, Ctx, c_int, OmUint32, *mut BufferDesc, *mut c_int, *mut BufferDesc) -> OmUint32,
    pub unwrap:
        unsafe extern "C" fn(MinorPtr, Ctx, *mut BufferDesc, *mut BufferDesc, *mut c_int, *mut OmUint32) -> OmUint32,
    pub display_status:
        unsafe extern "C" fn(MinorPtr, OmUint32, c_int, Oid, *mut OmUint32, *mut BufferDesc) -> OmUint32,
    pub import_name: unsafe extern "C" fn(MinorPtr, *mut BufferDesc, Oid, *mut Name) -> OmUint32,
    pub display_name: unsafe extern "C" fn(MinorPtr, Name, *mut BufferDesc, *mut Oid) -> OmUint32,
    pub release_name: unsafe extern "C" fn(MinorPtr, *mut Name) -> OmUint32,
    pub release_buffer: unsafe extern "C" fn(MinorPtr, *mut BufferDesc) -> OmUint32,
    _lib: Library,
}

impl Api {
    /// Opens [`LIBRARY`] and resolves every function; the error names what was missing.
    pub fn load() -> Result<Api, String> {
        Api::load_from(LIBRARY)
    }

    /// As [`Api::load`], from another file name (tests: a missing library).
    pub fn load_from(library: &str) -> Result<Api, String> {
        // SAFETY: loading MIT's GSS-API runs its (well-behaved) initialisers and nothing else.
        let lib = unsafe { Library::new(library) }.map_err(|e| e.to_string())?;
        macro_rules! sym {
            ($name:literal) => {
                // SAFETY: the declared type matches the C prototype in MIT's gssapi.h / gssapi_ext.h.
                *unsafe { lib.get(concat!($name, "\0").as_bytes()) }.map_err(|e| format!("{}: {e}", $name))?
            };
        }
        Ok(Api {
            acquire_cred_from: sym!("gss_acquire_cred_from"),
            release_cred: sym!("gss_release_cred"),
            init_sec_context: sym!("gss_init_sec_context"),
            accept_sec_context: sym!("gss_accept_sec_context"),
            delete_sec_context: sym!("gss_delete_sec_context"),
            wrap: sym!("gss_wrap"),
            unwrap: sym!("gss_unwrap"),
            display_status: sym!("gss_display_status"),
            import_name: sym!("gss_import_name"),
            display_name: sym!("gss_display_name"),
            release_name: sym!("gss_release_name"),
            release_buffer: sym!("gss_release_buffer"),
            _lib: lib,
        })
    }
}

/// An OID descriptor pointing at one of the constants in [`oid`] (the library never writes through it).
pub fn oid_desc(der: &'static [u8]) -> OidDesc {
    OidDesc { length: der.len() as OmUint32, elements: der.as_ptr() as *mut c_void }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_library_is_named() {
        let e = Api::load_from("libgssapi_nonexistent.so.9").err().expect("no such library");
        assert!(e.contains("libgssapi_nonexistent.so.9"), "{e}");
    }

    #[test]
    fn layouts_match_lp64_c() {
        // gssapi.h on LP64: {size_t, void*}, {OM_uint32, void*}, {OM_uint32, ptr}, {char*, char*}.
        assert_eq!((std::mem::size_of::<BufferDesc>(), std::mem::align_of::<BufferDesc>()), (16, 8));
        assert_eq!(std::mem::size_of::<OidDesc>(), 16);
        assert_eq!(std::mem::size_of::<KeyValueSet>(), 16);
        assert_eq!(std::mem::size_of::<KeyValueElement>(), 16);
        assert_eq!(std::mem::size_of::<OidSetDesc>(), 16);
    }
}
