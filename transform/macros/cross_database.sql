{#-
  One code path for both warehouses. target-duckdb 0.8.0 writes nested objects as DuckDB
  JSON and date-times as naive TIMESTAMP values in UTC; target-postgres writes jsonb and
  timestamp with time zone. These macros hide the difference: every timestamp leaves the
  staging layer as a plain timestamp in UTC, every JSON field as text. Each one dispatches
  on the adapter (default__ is DuckDB's, postgres__ PostgreSQL's), so a project that uses
  this package can override them for another warehouse.
-#}

{#- A text field of a JSON column, by dotted path: json_text('"user"', 'uuid'). -#}
{% macro json_text(column, path) -%}
  {{ return(adapter.dispatch('json_text', 'bitbucket_analytics')(column, path)) }}
{%- endmacro %}

{% macro default__json_text(column, path) -%}
  json_extract_string({{ column }}, '$.{{ path }}')
{%- endmacro %}

{% macro postgres__json_text(column, path) -%}
  (cast({{ column }} as jsonb) #>> '{ {{- path.split('.') | join(',') -}} }')
{%- endmacro %}

{#- One row per element of a JSON array column: the text of `key` of each element
    (target-postgres writes arrays of objects as jsonb[], hence to_jsonb).
    A set-returning expression for a select list ([] and null give no row). -#}
{% macro json_array_field(column, key) -%}
  {{ return(adapter.dispatch('json_array_field', 'bitbucket_analytics')(column, key)) }}
{%- endmacro %}

{% macro default__json_array_field(column, key) -%}
  unnest(json_extract_string({{ column }}, '$[*].{{ key }}'))
{%- endmacro %}

{% macro postgres__json_array_field(column, key) -%}
  (jsonb_array_elements(to_jsonb({{ column }})) ->> '{{ key }}')
{%- endmacro %}

{#- A loaded timestamp column as a plain timestamp in UTC. DuckDB's are already that
    (casting them to timestamptz would apply the session's zone). -#}
{% macro utc_timestamp(column) -%}
  {{ return(adapter.dispatch('utc_timestamp', 'bitbucket_analytics')(column)) }}
{%- endmacro %}

{% macro default__utc_timestamp(column) -%}
  cast({{ column }} as timestamp)
{%- endmacro %}

{% macro postgres__utc_timestamp(column) -%}
  (cast({{ column }} as timestamptz) at time zone 'UTC')
{%- endmacro %}

{#- An ISO 8601 text with an offset (as Bitbucket sends inside JSON) as a plain UTC timestamp. -#}
{% macro iso_to_utc(text) -%}
  {{ return(adapter.dispatch('iso_to_utc', 'bitbucket_analytics')(text)) }}
{%- endmacro %}

{% macro default__iso_to_utc(text) -%}
  cast(cast({{ text }} as timestamptz) at time zone 'UTC' as timestamp)
{%- endmacro %}

{% macro postgres__iso_to_utc(text) -%}
  (cast({{ text }} as timestamptz) at time zone 'UTC')
{%- endmacro %}

{#- end - start in seconds, fractions kept, negative kept, null when either is null. -#}
{% macro seconds_between(start, end) -%}
  {{ return(adapter.dispatch('seconds_between', 'bitbucket_analytics')(start, end)) }}
{%- endmacro %}

{% macro default__seconds_between(start, end) -%}
  ((epoch_us({{ end }}) - epoch_us({{ start }})) / 1000000.0)
{%- endmacro %}

{% macro postgres__seconds_between(start, end) -%}
  cast(extract(epoch from ({{ end }} - {{ start }})) as double precision)
{%- endmacro %}

{#- The interpolating median (mean of the two middle values), nulls ignored. -#}
{% macro median(expression) -%}
  {{ return(adapter.dispatch('median', 'bitbucket_analytics')(expression)) }}
{%- endmacro %}

{% macro default__median(expression) -%}
  median({{ expression }})
{%- endmacro %}

{% macro postgres__median(expression) -%}
  percentile_cont(0.5) within group (order by {{ expression }})
{%- endmacro %}

{#- A number as a double (DuckDB's FLOAT is 4 bytes, so not dbt.type_float). -#}
{% macro to_double(expression) -%}
  {{ return(adapter.dispatch('to_double', 'bitbucket_analytics')(expression)) }}
{%- endmacro %}

{% macro default__to_double(expression) -%}
  cast({{ expression }} as double)
{%- endmacro %}

{% macro postgres__to_double(expression) -%}
  cast({{ expression }} as double precision)
{%- endmacro %}

{#- The first day of the timestamp's calendar month, as a date. -#}
{% macro month_of(timestamp) -%}
  cast({{ dbt.date_trunc('month', timestamp) }} as date)
{%- endmacro %}

{#- The timestamp's calendar day, as a date. -#}
{% macro day_of(timestamp) -%}
  cast({{ dbt.date_trunc('day', timestamp) }} as date)
{%- endmacro %}
