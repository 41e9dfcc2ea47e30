"""Write template.yaml as aws-sam-translator transforms it, for checks that read plain CloudFormation."""

import sys

from imgclf_local.sam_transform import main

if __name__ == "__main__":
    sys.exit(main())
