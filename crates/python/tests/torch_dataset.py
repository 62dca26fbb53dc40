"""A Loader as a torch IterableDataset, in a module of its own so that `spawn`ed DataLoader
workers can import it (imported only where torch is)."""

import torch.utils.data as data


class LoaderDataset(data.IterableDataset):
    def __init__(self, loader):
        self.loader = loader

    def __iter__(self):
        return iter(self.loader)
