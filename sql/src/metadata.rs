//! What `GetSqlInfo` and `GetXdbcTypeInfo` tell a SQL tool about the
//! server: its name and version, that it is read-only, and the SQL types its
//! tables use.

use arrow_flight::sql::metadata::{
    SqlInfoData, SqlInfoDataBuilder, XdbcTypeInfo, XdbcTypeInfoData, XdbcTypeInfoDataBuilder,
};
use arrow_flight::sql::{Nullable, Searchable, SqlInfo, XdbcDataType};
use tonic::Status;

pub fn sql_info() -> Result<SqlInfoData, Status> {
    let mut b = SqlInfoDataBuilder::new();
    b.append(SqlInfo::FlightSqlServerName, "Quiver");
    b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    b.append(SqlInfo::FlightSqlServerArrowVersion, "1.5");
    b.append(SqlInfo::FlightSqlServerReadOnly, true);
    b.append(SqlInfo::FlightSqlServerSql, true);
    b.append(SqlInfo::FlightSqlServerSubstrait, false);
    b.append(SqlInfo::FlightSqlServerTransaction, 0i32);
    b.append(SqlInfo::FlightSqlServerCancel, false);
    b.append(SqlInfo::SqlDdlCatalog, false);
    b.append(SqlInfo::SqlDdlSchema, false);
    b.append(SqlInfo::SqlDdlTable, false);
    b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    b.build()
        .map_err(|e| Status::internal(format!("cannot build SqlInfo: {e}")))
}

fn type_info(name: &str, ty: XdbcDataType, prefix: Option<&str>) -> XdbcTypeInfo {
    XdbcTypeInfo {
        type_name: name.to_string(),
        data_type: ty,
        column_size: None,
        literal_prefix: prefix.map(String::from),
        literal_suffix: prefix.map(String::from),
        create_params: None,
        nullable: Nullable::NullabilityNullable,
        case_sensitive: ty == XdbcDataType::XdbcVarchar,
        searchable: Searchable::Full,
        unsigned_attribute: Some(false),
        fixed_prec_scale: ty == XdbcDataType::XdbcDecimal,
        auto_increment: Some(false),
        local_type_name: Some(name.to_string()),
        minimum_scale: None,
        maximum_scale: None,
        sql_data_type: ty,
        datetime_subcode: None,
        num_prec_radix: None,
        interval_precision: None,
    }
}

/// The SQL types of the lake's tables, as DataFusion names them.
pub fn xdbc_types() -> Result<XdbcTypeInfoData, Status> {
    let mut b = XdbcTypeInfoDataBuilder::new();
    for (name, ty, prefix) in [
        ("BOOLEAN", XdbcDataType::XdbcBit, None),
        ("TINYINT", XdbcDataType::XdbcTinyint, None),
        ("SMALLINT", XdbcDataType::XdbcSmallint, None),
        ("INTEGER", XdbcDataType::XdbcInteger, None),
        ("BIGINT", XdbcDataType::XdbcBigint, None),
        ("FLOAT", XdbcDataType::XdbcFloat, None),
        ("DOUBLE", XdbcDataType::XdbcDouble, None),
        ("DECIMAL", XdbcDataType::XdbcDecimal, None),
        ("VARCHAR", XdbcDataType::XdbcVarchar, Some("'")),
        ("BINARY", XdbcDataType::XdbcBinary, None),
        ("DATE", XdbcDataType::XdbcDate, Some("'")),
        ("TIME", XdbcDataType::XdbcTime, Some("'")),
        ("TIMESTAMP", XdbcDataType::XdbcTimestamp, Some("'")),
    ] {
        b.append(type_info(name, ty, prefix));
    }
    b.build()
        .map_err(|e| Status::internal(format!("cannot build the type info: {e}")))
}
