"""HTTP serving: raw rows in, predictions out.

Public surface, by module (imported from there: this package imports nothing, so a stage can
use `wire` without loading a web framework):

- `wire`: the invocation wire format, declared once (pydantic bodies shown in /openapi.json)
  and its caller side: `json_body`, `csv_body`, `read_response`, `read_csv_response`,
  `invoke` over a `ModelHost`. The evaluate stage and the tests call endpoints through it.
- `invocation`: one invocation, whichever app serves it: `respond` (request -> response),
  `answer` (bytes -> bytes, for in-process timing), `describe`, `ApiError`,
  `handle_api_errors`, `OrjsonResponse` and the OpenAPI declarations of an invocation route.
- `app`: `create_app`, the API over a registry (every dataset, its champion and versions).
- `sagemaker`: the SageMaker container contract over one model directory (`serve`).
- `models`: `ModelCache`, loaded predictors and each dataset's champion.
- `auth`: the optional API key; `lean_imports`: start-up of a serving process.
"""
