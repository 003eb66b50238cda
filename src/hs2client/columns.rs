//! Reading the `TColumn`s of a fetched V6 row set (Apache Thrift's generated union). No I/O.

use crate::hs2::rpc::hs2::TColumn;

/// What tests and tools ask of a fetched column, whatever its type.
pub trait ColumnExt {
    /// Rows in the column.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Bit `row` of the nulls bitmap (bytes beyond its end mean "not null").
    fn is_null(&self, row: usize) -> bool;
    /// The values of an integer column (TINYINT to BIGINT) as `i64`s; `None` for other types.
    fn as_i64s(&self) -> Option<Vec<i64>>;
    /// The values of a STRING or BINARY column, as bytes.
    fn as_bytes(&self) -> Option<&[Vec<u8>]>;
    /// The values of a STRING column as text; `None` for other types or bytes that are not UTF-8.
    fn as_strs(&self) -> Option<Vec<&str>>;
    /// The values of a BOOLEAN column.
    fn as_bools(&self) -> Option<&[bool]>;
}

impl ColumnExt for TColumn {
    fn len(&self) -> usize {
        match self {
            TColumn::BoolVal(c) => c.values.len(),
            TColumn::ByteVal(c) => c.values.len(),
            TColumn::I16Val(c) => c.values.len(),
            TColumn::I32Val(c) => c.values.len(),
            TColumn::I64Val(c) => c.values.len(),
            TColumn::DoubleVal(c) => c.values.len(),
            TColumn::StringVal(c) => c.values.len(),
            TColumn::BinaryVal(c) => c.values.len(),
        }
    }

    fn is_null(&self, row: usize) -> bool {
        let nulls = match self {
            TColumn::BoolVal(c) => &c.nulls,
            TColumn::ByteVal(c) => &c.nulls,
            TColumn::I16Val(c) => &c.nulls,
            TColumn::I32Val(c) => &c.nulls,
            TColumn::I64Val(c) => &c.nulls,
            TColumn::DoubleVal(c) => &c.nulls,
            TColumn::StringVal(c) => &c.nulls,
            TColumn::BinaryVal(c) => &c.nulls,
        };
        nulls.get(row / 8).is_some_and(|b| b & (1 << (row % 8)) != 0)
    }

    fn as_i64s(&self) -> Option<Vec<i64>> {
        Some(match self {
            TColumn::ByteVal(c) => c.values.iter().map(|v| i64::from(*v)).collect(),
            TColumn::I16Val(c) => c.values.iter().map(|v| i64::from(*v)).collect(),
            TColumn::I32Val(c) => c.values.iter().map(|v| i64::from(*v)).collect(),
            TColumn::I64Val(c) => c.values.clone(),
            _ => return None,
        })
    }

    fn as_bytes(&self) -> Option<&[Vec<u8>]> {
        match self {
            TColumn::StringVal(c) => Some(&c.values),
            TColumn::BinaryVal(c) => Some(&c.values),
            _ => None,
        }
    }

    fn as_strs(&self) -> Option<Vec<&str>> {
        match self {
            TColumn::StringVal(c) => c.values.iter().map(|v| std::str::from_utf8(v).ok()).collect(),
            _ => None,
        }
    }

    fn as_bools(&self) -> Option<&[bool]> {
        match self {
            TColumn::BoolVal(c) => Some(&c.values),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hs2::rpc::hs2::{TI64Column, TStringColumn};

    #[test]
    fn columns_read_back_with_their_nulls() {
        let ints = TColumn::I64Val(TI64Column::new(vec![1, 2], vec![0b10]));
        assert_eq!((ints.len(), ints.as_i64s()), (2, Some(vec![1, 2])));
        assert!(!ints.is_null(0) && ints.is_null(1) && !ints.is_null(9));
        let strings = TColumn::StringVal(TStringColumn::new(vec![b"a".to_vec(), vec![0xff]], vec![]));
        assert_eq!(strings.as_bytes().map(<[_]>::len), Some(2));
        assert_eq!(strings.as_strs(), None, "0xff is not UTF-8");
        assert_eq!(strings.as_i64s(), None);
    }
}
