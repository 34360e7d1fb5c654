#!/usr/bin/env bash
# Short-lived AWS credentials for a GitHub Actions job, by OIDC: no stored keys.
#
# Asks GitHub for the job's identity token (the job needs `permissions: id-token: write`),
# exchanges it with STS for the deploy role (deploy/aws/bootstrap.yml trusts only this
# repository's main branch) and exports the session to the job's later steps through
# $GITHUB_ENV, masked in the log. Plain curl and the AWS CLI of the runner image: no
# third-party action holds the credentials.
#
#   AWS_DEPLOY_ROLE_ARN  the role (repository variable)
#   AWS_REGION           the region (repository variable)
set -euo pipefail

: "${AWS_DEPLOY_ROLE_ARN:?set the repository variable AWS_DEPLOY_ROLE_ARN}"
: "${AWS_REGION:?set the repository variable AWS_REGION}"
: "${ACTIONS_ID_TOKEN_REQUEST_URL:?the job needs permissions: id-token: write}"

token=$(curl --silent --show-error --fail --retry 3 \
  -H "Authorization: bearer ${ACTIONS_ID_TOKEN_REQUEST_TOKEN}" \
  "${ACTIONS_ID_TOKEN_REQUEST_URL}&audience=sts.amazonaws.com" | jq -r .value)
echo "::add-mask::${token}"

# One hour covers an image build and a deployment; the role allows no longer.
read -r key_id secret session < <(
  aws sts assume-role-with-web-identity \
    --region "${AWS_REGION}" \
    --role-arn "${AWS_DEPLOY_ROLE_ARN}" \
    --role-session-name "github-${GITHUB_RUN_ID}-${GITHUB_RUN_ATTEMPT}" \
    --web-identity-token "${token}" \
    --duration-seconds 3600 \
    --query '[Credentials.AccessKeyId, Credentials.SecretAccessKey, Credentials.SessionToken]' \
    --output text
)
# (A failure inside the process substitution leaves these empty rather than stopping the script.)
if [[ -z "${key_id:-}" || -z "${secret:-}" || -z "${session:-}" ]]; then
  echo "::error::could not assume ${AWS_DEPLOY_ROLE_ARN} (is the role trusting this branch?)" >&2
  exit 1
fi
echo "::add-mask::${key_id}"
echo "::add-mask::${secret}"
echo "::add-mask::${session}"
{
  echo "AWS_ACCESS_KEY_ID=${key_id}"
  echo "AWS_SECRET_ACCESS_KEY=${secret}"
  echo "AWS_SESSION_TOKEN=${session}"
  echo "AWS_REGION=${AWS_REGION}"
  echo "AWS_DEFAULT_REGION=${AWS_REGION}"
} >> "${GITHUB_ENV}"
aws sts get-caller-identity --query Arn --output text
