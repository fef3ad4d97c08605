"""Images on clouds: list, save a running instance, stage a disk file, test it in one go.

save.py     `image save` on any cloud: which instance, flush, the provider's save_image, history
test_vm.py  `image test`: ExTENCI's extenci-test-vm as one command, with recorded clean-up
naming.py   ec2: where a staged file lives (the Nimbus/Cumulus convention) and the `storage:` key
staging.py  ec2: the resumable multipart upload to the cloud's S3-compatible store
Each provider does the cloud's part through its image hooks (providers/base.py): ec2 in
providers/ec2/images.py, local and qemu in providers/{local,qemu}/images.py.
"""
