namespace Petals.Tests;

public sealed class ProjectSmokeTests
{
    [Fact]
    public void RepositoryRootIsKnown() => Assert.True(File.Exists(Path.Combine(Petals.Testing.TestData.RepositoryRoot, "Petals.Library.sln")));
}
