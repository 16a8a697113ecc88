{#-
  Staging models are idempotent: an append-only loader, or a record the tap emits again
  (its lookback window, a resumed run), leaves several rows per primary key. The newest
  wins: ordered by the stream's own change time (`newer_first`, e.g. updated_on), then by
  the loaders' metadata columns when they exist (_sdc_extracted_at and friends, added by
  target-postgres's add_record_metadata or target-duckdb's add_metadata_columns).
-#}
{% macro newest_first(relation, newer_first=[]) -%}
  {%- set present = [] -%}
  {%- if execute -%}
    {%- for column in adapter.get_columns_in_relation(relation) -%}
      {%- do present.append(column.name | lower) -%}
    {%- endfor -%}
  {%- endif -%}
  {%- set terms = [] -%}
  {%- for expression in newer_first -%}
    {%- do terms.append(expression ~ ' desc nulls last') -%}
  {%- endfor -%}
  {%- for meta in ['_sdc_extracted_at', '_sdc_batched_at', '_sdc_received_at', '_sdc_sequence'] -%}
    {%- if meta in present -%}
      {%- do terms.append(adapter.quote(meta) ~ ' desc nulls last') -%}
    {%- endif -%}
  {%- endfor -%}
  {{ terms | join(', ') if terms else '1' }}
{%- endmacro %}

{#- The rows of `relation`, one per `key` (a list of columns), the newest version each. -#}
{% macro deduplicated(relation, key, newer_first=[]) -%}
  select * from (
    select
      loaded.*,
      row_number() over (
        partition by {{ key | join(', ') }}
        order by {{ newest_first(relation, newer_first) }}
      ) as bitbucket_version_rank
    from {{ relation }} as loaded
  ) as versions
  where bitbucket_version_rank = 1
{%- endmacro %}
