using Petals.Cli;

return await PetalsCommand.RunAsync(args, Console.Out, Console.Error).ConfigureAwait(false);
