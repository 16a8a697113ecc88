-- One row per deployment environment.
with latest as (
  {{ deduplicated(source('bitbucket', 'environments'), ['uuid']) }}
)

select
  repo_uuid,
  uuid as environment_uuid,
  name as environment_name,
  {{ json_text('environment_type', 'name') }} as environment_type
from latest
