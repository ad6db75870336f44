# Turns the MySQL migrations (schema/mysql/NNN_name.sql) into a C++ source holding them as string
# literals, so the binary carries its schema and migrate_mysql() needs no files at run time.
#   cmake -DSQL_DIR=<schema/mysql> -DOUTPUT=<file.cpp> -P embed_migrations.cmake
file(GLOB files "${SQL_DIR}/*.sql")
list(SORT files)
set(names "")
set(bodies "")
set(count 0)
foreach(f IN LISTS files)
  get_filename_component(name "${f}" NAME_WE)
  if(NOT name MATCHES "^[0-9]+_[A-Za-z0-9_]+$")
    message(FATAL_ERROR "${f}: a migration is named NNN_name.sql (digits, underscore, a name)")
  endif()
  file(READ "${f}" sql)
  string(FIND "${sql}" ")imlog_sql\"" clash)
  if(NOT clash EQUAL -1)
    message(FATAL_ERROR "${f} contains the literal's delimiter )imlog_sql\"")
  endif()
  string(APPEND names "    \"${name}\",\n")
  string(APPEND bodies "    R\"imlog_sql(${sql})imlog_sql\",\n")
  math(EXPR count "${count} + 1")
endforeach()
if(count EQUAL 0)
  message(FATAL_ERROR "no migrations in ${SQL_DIR}")
endif()
set(content "// Generated from schema/mysql/*.sql by projections/cmake/embed_migrations.cmake. Do not edit.
#include <cstddef>

namespace imlog::detail {
extern const char* const kMysqlMigrationNames[] = {
${names}};
extern const char* const kMysqlMigrationSql[] = {
${bodies}};
extern const std::size_t kMysqlMigrationCount = ${count};
}  // namespace imlog::detail
")
# Rewrite only on change, so an unchanged schema does not rebuild the library.
if(EXISTS "${OUTPUT}")
  file(READ "${OUTPUT}" old)
  if(old STREQUAL content)
    return()
  endif()
endif()
file(WRITE "${OUTPUT}" "${content}")
